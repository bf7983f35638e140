"""Training support around mmengine's Runner (imports mmengine, never mmdet or mmseg).

* :mod:`.checkpoint_safety`: the ``weights_only`` allow-list for mmengine checkpoints;
* :mod:`.hooks`: finite-loss check, atomic checkpoints, torch RNG state across resumes;
* :mod:`.launch`: what ``tools/train.py`` adds to a config (hooks, gloo without CUDA, the
  work-dir guard, the resumed run's seed);
* :mod:`.cli`: what ``tools/train.py`` and ``tools/test.py`` share once their arguments are
  parsed (config, ``--cfg-options``, the Runner, errors as one line); :mod:`.tool_args`: their
  shared arguments (standard library only); :mod:`.config_keys`: a misspelt key or config
  path named before the run; :mod:`.show_dir`: ``tools/test.py --show-dir``;
* :mod:`.inference`: a model for inference from a config and a checkpoint checked to fit;
* :mod:`.precision`, :mod:`.errors`: float32 without a GPU; errors reported as diagnoses;
* :mod:`.layer_decay`: ``ViTLayerDecayOptimizerConstructor``, layer-wise lr decay over a timm
  ViT's blocks (the fully fine-tuned baselines).

Importing it registers the hooks and the optimizer constructor and installs the allow-list.
"""

from . import hooks, layer_decay  # noqa: F401  (register the hooks, the lr-decay constructor)
from .checkpoint_safety import allow_mmengine_checkpoints

allow_mmengine_checkpoints()
