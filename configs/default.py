"""Settings every gen_jax experiment shares; model configs start from `get_config` here.

Every config takes an optional argument, given after a colon on the command line:
`--config=configs/vae.py:smoke` shrinks the run to a few seconds (tiny model, few steps) without
changing the code path. Tests and CI use it. A model config starts from `get_config` here, sets
its own fields, shrinks its model when `config.smoke`, and ends with `shrink_for_smoke`.
"""

import ml_collections


def parse_argument(argument: str | None) -> bool:
  """Returns whether the config argument asks for a smoke run."""
  if argument in (None, ''):
    return False
  if argument == 'smoke':
    return True
  raise ValueError(f"config argument must be empty or 'smoke', got {argument!r}")


def get_config(argument: str | None = None) -> ml_collections.ConfigDict:
  smoke = parse_argument(argument)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.name = ''                   # the experiment's name: each config sets its file's name
  config.smoke = smoke

  config.model = ml_collections.ConfigDict()
  config.model.name = ''             # a name from gen_jax.registry; each model config sets it

  # Data: `digits` ships with scikit-learn and needs no download.
  config.data = ml_collections.ConfigDict()
  config.data.name = 'digits'        # digits | idx | folder | any tensorflow-datasets name
  config.data.path = ''              # directory for idx / folder, tfds data_dir for tfds
  config.data.image_size = 28        # images are resized to image_size × image_size
  config.data.channels = 1
  config.data.holdout_fraction = 0.2  # last part held out for sources without their own split
  config.data.train_split = 'train'  # tfds splits
  config.data.holdout_split = 'test'
  config.data.max_examples = 0       # 0 = all; else the first N training examples
  # True: the training split is not read into memory but streamed from its files through Grain,
  # for data larger than memory (folder and tensorflow-datasets sources). A batch still depends
  # only on (seed, step), so a resumed run reads the same batches.
  config.data.streaming = False

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.num_steps = 3000
  config.train.log_every = 50
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 3
  config.train.eval_every = 0        # 0 = only at the end
  config.train.best_metric = 'fid'   # keep the best checkpoint by this eval metric in workdir/best
  config.train.best_mode = 'min'     # min | max: whether smaller or larger values are better
  config.train.num_devices = 0       # 0 = every local device
  # Steps per compiled call: more than one spares an accelerator the host's launch overhead
  # (results are the same); 'auto' unrolls them on CPU and loops over them (lax.scan) elsewhere.
  config.train.steps_per_dispatch = 1
  config.train.dispatch_form = 'auto'   # auto | scan | unrolled

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adam'         # adam | adamw | rmsprop | sgd
  config.optim.learning_rate = 1e-3
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.weight_decay = 0.0
  config.optim.decay_every_epochs = 0  # StepLR: multiply the rate by decay_factor every N epochs
  config.optim.decay_factor = 0.1
  config.optim.cosine_decay_steps = 0  # else the rate falls to 0 along a cosine over this many updates
  config.optim.linear_decay_fraction = 0.0  # else constant, then linear to 0 over this last part of training
  config.optim.grad_clip_norm = 0.0    # 0 = no clipping

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 250
  config.eval.max_examples = 0       # 0 = the whole held-out split
  # Sample quality (gen_jax.evaluation.sample_metrics), measured with the project's digit classifier.
  config.eval.num_samples = 0        # samples measured; 0 = as many as held-out images
  config.eval.classifier_dir = ''    # the classifier's workdir; '' = runs/classifier/<data>_<size>x<size>_<digest>
  config.eval.classifier_steps = 1000  # its training steps (trained on first use when missing)

  config.sample = ml_collections.ConfigDict()
  config.sample.num_samples = 64

  return config


def shrink_for_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks the run's length and data (not its code path) when the config asks for smoke.

  Model configs call this last, after setting their own fields and shrinking their model.
  """
  if not config.smoke:
    return config
  config.data.max_examples = 256
  config.train.batch_size = 32
  config.train.num_steps = 12
  config.train.log_every = 4
  config.train.checkpoint_every = 6
  config.eval.batch_size = 64
  config.eval.max_examples = 128
  config.eval.classifier_steps = 20
  config.sample.num_samples = 16
  return config
