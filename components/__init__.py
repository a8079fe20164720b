"""Custom TFX components: ExampleGens for CSV dialects and TFDS, and the validation gate."""
