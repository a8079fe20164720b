"""A TF Serving-compatible model server, REST client and deployment files.

`python -m serving serve` serves the Pusher's `<base_path>/<version>/` SavedModels
over TF Serving's REST and gRPC APIs where the real `tensorflow_model_server`
cannot be installed; `deploy/` runs the real one on the same directory.
Importing this package does not import TensorFlow.
"""
