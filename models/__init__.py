"""Transform and Trainer user code: preprocessing, Keras model builders, trainer modes, exports."""
