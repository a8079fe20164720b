# The pipeline image. Every Kubeflow step runs it (KubeflowDagRunner's --image),
# and so do remote Beam workers with --beam-runner DataflowRunner|FlinkRunner|SparkRunner.
# Base: TFX's own image at the TFX version of requirements.lock
# (tests/test_kubeflow.py checks the tag against the installed TFX).
FROM tensorflow/tfx:1.15.1

# The project at its repository layout under /pipeline (pipeline.kubeflow.IMAGE_PROJECT_ROOT):
# the compiled pipeline reads the curated schema and the bundled data from here
# (/pipeline/schemas/NAME/schema.pbtxt, /pipeline/data/NAME), and Transform/Trainer/our
# components import `models`, `components` and `pipeline` by module path.
WORKDIR /pipeline
COPY . .

# What the TFX image lacks (TFDS sources), at the versions the project is tested with.
RUN pip install --no-cache-dir -c requirements.lock tensorflow-datasets

# Editable, so the code's project root (specs.dataset.PROJECT_ROOT) is /pipeline in
# every step, exactly the layout `python -m pipeline compile` wrote into the pipeline.
RUN pip install --no-cache-dir --no-deps -e .

# No ENTRYPOINT: the base image's one (Beam's SDK harness boot) keeps this image usable
# as a Beam worker container; KFP sets each step's command itself.
