"""TFX's penguin example, v1.15.1 as shipped in the tfx package, with Beam in_memory.

Runs what `python penguin_pipeline_local.py` runs (its `__main__`'s arguments: Keras,
Tuner, BulkInferrer, accuracy threshold 0.6), with two differences: Beam's DirectRunner in
`in_memory` mode with one worker, as our pipeline runs it, instead of the example's
`multi_processing`; and paths: its data from bench/data/penguin/ (copied from the tfx
repository at v1.15.1), everything it writes under --home.

    python -m bench.penguin_example --home /tmp/penguin_home
"""
from __future__ import annotations

import argparse
import pathlib
import sys

# The example's own kind of Beam args, in_memory: with these TFX packages itself for remote Beam
# workers before each Beam component, as the example does (our runs pass none; pipeline/config.py).
BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
DATA = pathlib.Path(__file__).resolve().parent / "data" / "penguin"
NAME = "penguin_local_keras"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.penguin_example", description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=pathlib.Path, required=True, help="where the example writes everything")
    home = parser.parse_args(argv).home.resolve()

    import absl.logging
    from tfx.examples.penguin import penguin_pipeline_local as example  # imports tfx.v1, as the example does
    absl.logging.set_verbosity(absl.logging.INFO)
    example.tfx.orchestration.LocalDagRunner().run(example.create_pipeline(
        pipeline_name=NAME,
        pipeline_root=str(home / "tfx" / "pipelines" / NAME),
        data_root=str(DATA),
        module_file=str(pathlib.Path(example.__file__).with_name("penguin_utils_keras.py")),
        accuracy_threshold=0.6,
        serving_model_dir=str(home / "penguin" / "serving_model" / NAME),
        metadata_path=str(home / "tfx" / "metadata" / NAME / "metadata.db"),
        user_provided_schema_path=None,
        enable_tuning=True,
        enable_bulk_inferrer=True,
        examplegen_input_config=None,
        examplegen_range_config_date=None,
        resolver_range_config=None,
        beam_pipeline_args=BEAM_ARGS,
        enable_transform_input_cache=True,
        enable_example_diff=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
