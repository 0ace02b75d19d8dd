"""Several steps per compiled call: the same result as one step per call, the plan of calls, and
batches prepared ahead."""

import threading

import chex
import jax
import numpy as np
import pytest

from gen_jax import data, registry
from gen_jax.families.base import DataSpec
from gen_jax.runtime import dispatch, parallel
from gen_jax.runtime.prefetch import Prefetcher
from tests.conftest import load_config, run_steps

STEPS_PER_DISPATCH = 2


def _family(name):
  config = load_config(name)
  dataset = data.load(**config.data)
  batches = data.BatchSchedule(dataset.train, config.train.batch_size, config.seed)
  return registry.get(config.model.name)(config, DataSpec.of(dataset, batches)), batches


@pytest.mark.parametrize('name,form', [('vae', 'scan'), ('vae', 'unrolled'), ('dcgan', 'scan')])
def test_several_steps_per_call_equal_one_step_per_call_on_four_devices(name, form):
  family, batches = _family(name)
  mesh = parallel.make_mesh(4)
  state = family.init_state(jax.random.PRNGKey(0))
  expected, last_metrics = run_steps(family, state, batches, mesh, 2 * STEPS_PER_DISPATCH)

  run = dispatch.Dispatcher(family.train_step, mesh, STEPS_PER_DISPATCH, form)
  state = parallel.replicate(jax.tree.map(np.copy, state), mesh)
  for first in range(0, 2 * STEPS_PER_DISPATCH, STEPS_PER_DISPATCH):
    steps = range(first, first + STEPS_PER_DISPATCH)
    state, sums = run(state, dispatch.put_batches([batches(s) for s in steps], mesh),
                      STEPS_PER_DISPATCH)
  state = jax.device_get(state)
  assert int(state.step) == 2 * STEPS_PER_DISPATCH
  chex.assert_trees_all_close(state, expected, atol=2e-5, rtol=2e-5)
  # The sums cover the call's steps: the last step's metrics are part of the last sum.
  assert set(sums) == set(last_metrics)
  chex.assert_tree_all_finite(sums)


def test_plan_stops_at_every_boundary_and_covers_every_step_once():
  boundaries = {5, 8, 9, 20}
  calls = list(dispatch.plan(3, 20, 4, lambda done: done in boundaries))
  assert calls == [(3, 2), (5, 3), (8, 1), (9, 4), (13, 4), (17, 3)]
  assert list(dispatch.plan(0, 5, 1, lambda done: False)) == [(i, 1) for i in range(5)]
  assert list(dispatch.plan(7, 7, 4, lambda done: False)) == []


def test_auto_form_unrolls_on_cpu_and_rejects_unknown_forms():
  mesh = parallel.make_mesh(1)
  assert dispatch.resolve_form('auto', mesh) == 'unrolled'
  assert dispatch.resolve_form('scan', mesh) == 'scan'
  with pytest.raises(ValueError, match=r"form must be one of .*'fused'"):
    dispatch.resolve_form('fused', mesh)


def test_prefetcher_keeps_order_and_prepares_ahead_of_the_consumer():
  prepared = []
  second_ready = threading.Event()

  def prepare(first, count):
    prepared.append(first)
    if first == 2:
      second_ready.set()
    return [first] * count

  calls = Prefetcher(prepare, [(0, 2), (2, 2), (4, 1)], depth=2)
  items = iter(calls)
  assert next(items) == (0, 2, [0, 0])
  assert second_ready.wait(timeout=10)   # the next call was prepared before it was asked for
  assert list(items) == [(2, 2, [2, 2]), (4, 1, [4])]
  calls.close()
  assert prepared == [0, 2, 4]


def test_prefetcher_raises_the_preparation_error_at_its_call_and_closes_early():
  def prepare(first, count):
    if first == 1:
      raise FileNotFoundError('batch file gone')
    return first

  calls = Prefetcher(prepare, [(0, 1), (1, 1), (2, 1)])
  items = iter(calls)
  assert next(items) == (0, 1, 0)
  with pytest.raises(FileNotFoundError, match='batch file gone'):
    next(items)
  calls.close()

  endless = Prefetcher(lambda first, count: first, ((i, 1) for i in range(10**9)), depth=1)
  assert next(iter(endless)) == (0, 1, 0)
  endless.close()   # returns although the plan never ends
