"""The benchmark's markdown report, from its JSON record."""

from __future__ import annotations

from typing import Any

SIDES = ('gen_jax', 'torch')
HEADLINE_COLUMNS = ['family', 'batch', 'image', 'gen_jax steps/s', 'PyTorch steps/s',
                    'speed ratio (gen_jax / PyTorch)', 'gen_jax peak memory', 'PyTorch peak memory',
                    'gen_jax first call (s)', 'parameters (gen_jax / PyTorch)']
SWEEP_COLUMNS = ['family', 'batch', 'image', 'gen_jax ms/step', 'PyTorch ms/step',
                 'speed ratio (gen_jax / PyTorch)', 'gen_jax peak memory', 'PyTorch peak memory']
EVALUATION_COLUMNS = ['family', 'batch', 'image', 'gen_jax evaluations/step',
                      'PyTorch evaluations/step', 'speed ratio per evaluation (gen_jax / PyTorch)']
FLOPS_COLUMNS = ['family', 'batch', 'image', 'XLA GFLOP/step', 'gen_jax TFLOP/s',
                 'PyTorch TFLOP/s (same count)', 'gen_jax % of peak', 'PyTorch % of peak']


def table(header: list[str], rows: list[list[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |',
           '| ' + ' | '.join(['---'] * 3 + ['---:'] * (len(header) - 3)) + ' |']
  return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows]) + '\n'


def size(num_bytes: float | None) -> str:
  if num_bytes is None:
    return '—'
  for unit, scale in (('GiB', 2 ** 30), ('MiB', 2 ** 20), ('KiB', 2 ** 10)):
    if abs(num_bytes) >= scale:
      return f'{num_bytes / scale:.1f} {unit}'
  return f'{num_bytes:.0f} B'


def peak_memory(side: dict[str, Any]) -> str:
  """Device peak where the side has one, else the host's RSS growth."""
  if 'device_peak_bytes' in side:
    return ('≤ ' if side.get('device_peak_is_bound') else '') + size(side['device_peak_bytes'])
  mark = ' †' if side.get('host_first_case') else ''
  return size(side.get('host_peak_growth_bytes')) + mark


def _ratio(case) -> str:
  return f"{case['ratio']:.2f}×" if case.get('ratio') else '—'


def _image(case) -> str:
  return f"{case['image_size']}²"


def headline_rows(cases) -> list[list[str]]:
  rows = []
  for c in cases:
    j, t = c['gen_jax'], c['torch']
    params = f"{j['info']['parameters']:,} / {t['info']['parameters']:,}"
    if j['info']['parameters'] != t['info']['parameters']:
      params += ' (differ)'
    rows.append([c['family'], str(c['batch_size']), _image(c), f"{j['median_steps_per_s']:.2f}",
                 f"{t['median_steps_per_s']:.2f}", _ratio(c), peak_memory(j), peak_memory(t),
                 f"{j['info'].get('first_call_s', float('nan')):.1f}", params])
  return rows


def sweep_rows(cases) -> list[list[str]]:
  return [[c['family'], str(c['batch_size']), _image(c),
           f"{1000 / c['gen_jax']['median_steps_per_s']:.2f}",
           f"{1000 / c['torch']['median_steps_per_s']:.2f}", _ratio(c),
           peak_memory(c['gen_jax']), peak_memory(c['torch'])] for c in cases]


def evaluation_rows(cases) -> list[list[str]]:
  """Cases whose step evaluates the loss a varying number of times (an L-BFGS iteration)."""
  rows = []
  for c in cases:
    counts = [c[side].get('evaluations_per_step') for side in SIDES]
    if all(counts):
      rows.append([c['family'], str(c['batch_size']), _image(c), f'{counts[0]:.2f}',
                   f'{counts[1]:.2f}', f"{c['ratio'] * counts[0] / counts[1]:.2f}×"])
  return rows


def flops_rows(cases, peak: float) -> list[list[str]]:
  rows = []
  for c in cases:
    flops = c['gen_jax'].get('flops_per_step')
    if not flops:
      continue
    achieved = [flops * c[side]['median_steps_per_s'] for side in SIDES]
    percent = [f'{100 * a / peak:.2f}' if peak else '—' for a in achieved]
    rows.append([c['family'], str(c['batch_size']), _image(c), f'{flops / 1e9:.3f}',
                 f'{achieved[0] / 1e12:.4f}', f'{achieved[1] / 1e12:.4f}', *percent])
  return rows


def markdown(record: dict[str, Any]) -> str:
  s, m = record['settings'], record['machine']
  done = [c for c in record['cases'] if 'ratio' in c]
  headline = [c for c in done if c['headline']]
  swept = {sweep: {c['family'] for c in done if c['sweep'] == sweep} for sweep in ('batch', 'image')}
  order = {name: index for index, name in enumerate(dict.fromkeys(c['family'] for c in done))}

  def sweep(kind):
    return sorted((c for c in done if c['family'] in swept[kind] and c['sweep'] in (kind, 'headline')),
                  key=lambda c: (order[c['family']], c['batch_size'], c['image_size']))

  by_batch, by_image = sweep('batch'), sweep('image')
  jax_info, torch_info = record.get('gen_jax', {}), record.get('torch', {})
  device = (f"JAX {jax_info.get('version', '?')} on {jax_info.get('backend', '?')} "
            f"({jax_info.get('device', '?')}); PyTorch {torch_info.get('version', '?')} on "
            f"{torch_info.get('device', '?')}" +
            (f" ({torch_info['gpu']}; TF32 matmul {torch_info['matmul_tf32']}, cuDNN TF32 "
             f"{torch_info['cudnn_tf32']})" if 'gpu' in torch_info else '') +
            f" with {torch_info.get('threads', '?')} thread(s)")
  lines = [
      '# gen_jax against PyTorch: every model family, one run, one machine',
      '',
      f"**Machine:** {m['cpu']}, {m['cores']} cores, {size(m['memory_bytes'])} memory; "
      f"{m['platform']}, Python {m['python']}. {device}. "
      f"JAX default matmul precision: {jax_info.get('default_matmul_precision', '?')} "
      f"(--matmul_precision={s.get('matmul_precision', 'default')}). "
      f"XLA_FLAGS={m['xla_flags']!r}."
      + (f" Each side pinned to {s['cores']} core(s)." if s.get('cores') else ''),
      f"**Load average** (1 min) at start / end: {record['load_start']} / {record.get('load_end', '—')}."
      + (f" **Note:** {s['note']}" if s['note'] else ''),
      '',
      f"**Method.** Each case: gen_jax's own train step (the family's `train_step`, "
      f"{s['steps_per_dispatch']} step(s) per dispatch, form {s['dispatch_form']!r}) against the "
      "same networks, losses and optimisers in plain eager PyTorch (experiments/torch_models), on "
      f"the same random batches ({s['batch_groups'] * s['steps_per_dispatch']} of them, prepared "
      f"ahead on the device). Warm-up (JAX's compilation: the first call) untimed; then the two "
      f"take turns of {s['slice_s']:g} s until each has trained {s['budget_s']:g} s. Speed: the "
      "median over a side's slices of its steps per second; the ratio is gen_jax's over "
      "PyTorch's (above 1: gen_jax faster). No losses are read back within a slice on either side."
      + (" gen_jax's programs were compiled beforehand into a persistent compilation cache "
         '(--compile_only): its first call is the cache\'s load, not a compilation.'
         if s.get('compilation_cache_dir') else ''),
      '',
      f"**Memory:** {record['memory_measure']}",
      '',
      '## Every family at its config\'s batch and image size',
      '',
      table(HEADLINE_COLUMNS, headline_rows(headline)),
  ]
  if by_batch:
    lines += ['## Step time as the batch grows', '', table(SWEEP_COLUMNS, sweep_rows(by_batch))]
  if by_image:
    lines += ['## Step time as the image grows (convolutional models)', '',
              table(SWEEP_COLUMNS, sweep_rows(by_image))]
  rows = evaluation_rows(done)
  if rows:
    lines += ['## Loss evaluations per step', '',
              'A step that may evaluate the loss and its gradient a varying number of times (an '
              'L-BFGS iteration with a line search; without one, as both sides run it now, once) '
              'is compared per evaluation too: the speed ratio times the evaluations per step of '
              'gen_jax over those of PyTorch.', '',
              table(EVALUATION_COLUMNS, rows)]
  rows = flops_rows([c for c in done if c.get('largest_batch')], s['peak_flops'])
  if rows:
    peak = (f"against a peak of {s['peak_flops'] / 1e12:g} TFLOP/s ({s['peak_flops_name'] or 'as given'})"
            if s['peak_flops'] else 'no peak given (--peak_flops)')
    lines += ['## Achieved FLOP/s at the largest batch', '',
              f"FLOPs per step: XLA's cost analysis of gen_jax's compiled step "
              f"(`jax.jit(train_step).lower(...).compile().cost_analysis()`); the same count is "
              f"used for PyTorch's rate; {peak}.", '', table(FLOPS_COLUMNS, rows)]
  notes = [c for c in record['cases'] if 'ratio' not in c]
  if notes:
    lines += ['## Not measured', '']
    lines += [f"- {c['family']} batch {c['batch_size']}, image {c['image_size']}: {c['skipped']}"
              for c in notes]
    lines.append('')
  lines += ['Family notes: ' + '; '.join(f'{k}: {v}' for k, v in record['family_notes'].items()), '',
            f"Command: `{record['command']}`", '']
  return '\n'.join(lines)
