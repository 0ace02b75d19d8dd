"""Neural style transfer (Gatys, Ecker & Bethge, 2016): one image optimised by L-BFGS so that its
VGG19 features match a content picture and its Gram matrices match style pictures.

  python -m gen_jax.main --config=configs/style_transfer.py \\
      --config.content=photo.jpg --config.style=painting.jpg [--workdir=runs/my_transfer]

Pictures are file paths or `skimage:<name>`, pictures inside scikit-image's wheel (chelsea,
astronaut, coffee, rocket, immunohistochemistry, hubble_deep_field, brick, gravel, …): the
defaults, the cat Chelsea painted with the coffee cup, need no download. Several styles:
`--config.style=a.jpg,b.jpg --config.style_weights="(0.7, 0.3)"`.

Features: `auto` uses the pretrained VGG19 in `model.weights_dir` (default ~/.cache/gen_jax/vgg19)
when a file of either published format is there, and otherwise VGG19 with RANDOM filters, said in
the log, the report and the sheet: random filters still synthesise textures (Ustyuzhaninov et al.,
2016; He, Wang & Hopcroft, 2016) but the result is no pretrained style transfer. `keras` or `torchvision`
demand those weights (fetched once when online; offline, the error says which file to put where).

Layers and weights are the paper's: content at conv4_2, style at conv1_1 … conv5_1 with equal
weights; average pooling, which the paper prefers for synthesis. Content 1, style 1e6 (the
PyTorch tutorial's balance for torchvision's features; Keras features are rescaled to the same
scale, `gen_jax.data.vgg19_weights.FEATURE_SCALE`), a little total variation against pixel noise.
L-BFGS with optax's zoom line search, 20 iterations between returns to the host. Two scales: 150
iterations at half size settle the layout, the rest at full size (longer side 256) add detail.
Pixels are kept in [0, 1] by optimising their logits (`image_range = sigmoid`): clamping them
between dispatches instead (`clamp`, as PyTorch's tutorial clamps) throws away L-BFGS's memory and
part of its progress each time; on the default transfer at 64 pixels (one scale, random filters),
80 iterations reached a total loss of 0.39 with logits and 0.99 with the clamp.

`optimiser.line_search=none` is the tutorial's `torch.optim.LBFGS`: a fixed step, one loss
evaluation an iteration, more than twice the iterations per second on the CPU; pair it with
`image_range=clamp`, as the tutorial does. It ends at a higher loss than the default in less
time, and with logits the fixed step stalls, so the default keeps the line search (PERFORMANCE.md
has the runs).

`:smoke` is a run of seconds for tests: 32 pixels, layers up to conv2_1, a few iterations.
"""

import ml_collections

from configs import default


def get_config(argument: str | None = None) -> ml_collections.ConfigDict:
  smoke = default.parse_argument(argument)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.name = 'style_transfer'
  config.smoke = smoke

  config.content = 'skimage:chelsea'
  config.style = 'skimage:coffee'    # one picture, several separated by commas, or a list
  config.style_weights = ()          # one per style picture, normalised; () = equal
  config.init = 'content'            # content | noise | a picture (path or skimage:<name>)
  config.preserve_colour = False     # transfer on luminance only, keep the content's colours
  config.image_range = 'sigmoid'     # sigmoid | clamp: how pixels are kept in [0, 1]
  config.max_size = 256              # the result's longer side (the content is shrunk to fit)
  config.num_scales = 2              # coarse to fine: each coarser scale halves the size
  config.style_scale = 1.0           # style pictures' longer side, relative to the result's

  m = config.model = ml_collections.ConfigDict()
  m.name = 'style_transfer'
  m.features = 'auto'                # auto | keras | torchvision | random
  m.weights_dir = ''                 # '' = ~/.cache/gen_jax/vgg19
  m.pooling = 'average'              # average | max
  m.content_layers = ('conv4_2',)
  m.content_layer_weights = ()       # one per content layer, normalised; () = equal
  m.style_layers = ('conv1_1', 'conv2_1', 'conv3_1', 'conv4_1', 'conv5_1')
  m.style_layer_weights = ()         # one per style layer, normalised; () = equal
  m.content_weight = 1.0
  m.style_weight = 1e6
  m.tv_weight = 1.0

  o = config.optimiser = ml_collections.ConfigDict()
  o.name = 'lbfgs'                   # lbfgs | adam
  o.line_search = 'zoom'             # L-BFGS's: zoom (optax's) | none (PyTorch's: steps of 1)
  o.memory_size = 10                 # L-BFGS's curvature pairs
  o.learning_rate = 0.02             # Adam's (L-BFGS's line search sets its own step)
  o.coarse_iterations = 150          # iterations at each coarser scale
  o.iterations_per_dispatch = 20     # iterations between returns to the host (logs, checkpoints)
  o.dispatch_form = 'auto'           # auto | loop (one compiled call) | calls (one per iteration)

  t = config.train = ml_collections.ConfigDict()
  t.num_steps = 450                  # optimiser iterations over every scale
  t.log_every = 20
  t.image_every = 100                # intermediate pictures; 0 = none
  t.checkpoint_every = 100
  t.keep_checkpoints = 3

  if smoke:
    config.max_size = 32
    m.content_layers = ('conv2_1',)
    m.style_layers = ('conv1_1', 'conv2_1')
    o.coarse_iterations = 4
    o.iterations_per_dispatch = 4
    t.num_steps = 10
    t.log_every = 2
    t.image_every = 4
    t.checkpoint_every = 4
  return config
