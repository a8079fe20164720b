"""The Evaluator's baseline: the most recently blessed model other than the candidate.

TFX's LatestBlessedModelStrategy resolves the latest blessed model, whichever it is.
On a re-run with nothing changed the Trainer is cached, so its model *is* that latest
blessed model: the Evaluator's baseline input changes (none -> the candidate itself),
TFX's cache key changes with it, and the Evaluator re-executes to compare the model
with itself. Leaving the candidate out, a re-run resolves the baseline the earlier
evaluation was made against, the Evaluator's inputs are unchanged and it is cached.
A newly trained candidate is still compared with the model blessed (and pushed) last.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import ml_metadata as mlmd
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.common import resolver

MODEL = "model"                # every Model of the pipeline
BLESSING = "model_blessing"    # every ModelBlessing of the pipeline
CANDIDATE = "candidate"        # this run's Trainer output


class LatestBlessedBaselineStrategy(resolver.ResolverStrategy):
    """Resolves {model, model_blessing} to the last blessed model that is not the candidate (or nothing)."""

    def resolve_artifacts(self, store: mlmd.MetadataStore, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        candidates = {artifact.id for artifact in input_dict.get(CANDIDATE, [])}
        models = {artifact.id: artifact for artifact in input_dict.get(MODEL, [])}
        blessings = [
            blessing for blessing in input_dict.get(BLESSING, [])
            if blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1
            and blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) in models
            and blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) not in candidates]
        result = {MODEL: [], BLESSING: [], CANDIDATE: list(input_dict.get(CANDIDATE, []))}
        if blessings:
            # The newest blessing, not the newest model: a re-blessed older model is what was pushed last.
            latest = max(blessings, key=lambda blessing: blessing.id)
            result[MODEL] = [models[latest.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY)]]
            result[BLESSING] = [latest]
        return result
