"""exp_gradients: the encoder/decoder gradient balance of exp55's runs (read from their
metrics.csv; nothing trained or fitted here). Its presets are exp55's."""
from common.studies import Results, Study
from exp55_dynamics.config import PRESETS

STUDY = Study(
    name="exp_gradients", folder="exp_gradients", presets=PRESETS,
    cost=lambda units, preset, qstar_steps, stacked=False: {},   # exp55 trains its runs
    models=lambda preset: set(),
    results=(Results("exp_gradients", "Encoder/decoder gradient balance",
                     "Large decoders unbalance the encoder/decoder gradients; flows are more "
                     "balanced.", ("gradients",)),))
