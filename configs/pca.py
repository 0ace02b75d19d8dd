"""PCA by eigendecomposition of the covariance matrix, on handwritten digits.

One streamed pass over the training data accumulates the covariance (the batch size must divide
the number of training examples: digits' 1,438 training images are cut to 1,400, seven batches
of 200), then the eigendecomposition keeps the components that explain 95% of the variance
(or `model.n_components` of them when set). Evaluation writes the scree plot, reconstructions
from 1, 2, 5, 10 and 50 components, the 2-D projection coloured by label, the leading
components, and a table of linear-probe accuracy and k-means NMI for raw pixels against PCA.
On MNIST: `--config.data.name=idx --config.data.path=../shared/data/mnist
--config.data.max_examples=0 --config.train.num_steps=40` (8,000 training images).
"""

from configs import default


def get_config(argument: str | None = None):
  config = default.get_config(argument)
  config.name = 'pca'

  config.model.name = 'pca'
  config.model.n_components = 0             # a count; 0 = choose by variance_fraction
  config.model.variance_fraction = 0.95     # keep the fewest components explaining more than this
  config.model.whiten = False               # scale the coordinates to unit variance

  config.data.max_examples = 1400
  config.train.batch_size = 200
  config.train.num_steps = 7                # one epoch; later steps would not change the fit
  config.train.log_every = 1
  config.train.checkpoint_every = 7

  config.eval.reconstruction_components = (1, 2, 5, 10, 50)
  config.eval.scree_components = 60         # components shown on the scree plot
  config.eval.probe_max_train = 0           # training examples for the linear probe; 0 = all
  return default.shrink_for_smoke(config)
