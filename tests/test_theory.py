"""Theory lab: problem constants, exact tracking, bounds and statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedasync_jax import (client, delays, executor, reference, rules,
                          scheduler, staleness, theory)
from fedasync_jax import tasks


def _rows(p):
  """The stored rows a_j (without the linear-shift columns), float64."""
  return np.asarray(p.data.x, np.float64)[:, :p.dim]


@pytest.mark.parametrize("shift", ["targets", "linear"])
def test_least_squares_constants(shift):
  with jax.enable_x64(True):
    sigma2 = 6.0 if shift == "targets" else 0.3
    p = theory.least_squares(num_clients=12, examples_per_client=16, dim=4,
                             lipschitz=2.5, mu=0.25, zeta2=0.7,
                             sigma2=sigma2, batch_size=4, shift=shift,
                             seed=3, dtype=np.float64)
    N, n, d = 12, 16, 4
    a = _rows(p)
    # L is the largest eigenvalue of the global Hessian (1/(N n)) A^T A.
    eig = np.linalg.eigvalsh(a.T @ a / (N * n))
    np.testing.assert_allclose([p.lipschitz, p.mu], [eig[-1], eig[0]],
                               rtol=1e-12)
    np.testing.assert_allclose([p.lipschitz, p.mu, p.zeta2, p.sigma2],
                               [2.5, 0.25, 0.7, sigma2], rtol=1e-9)
    w_star = jnp.asarray(p.w_star)
    # The optimum has zero full gradient, measured through the client loss.
    g_i = np.asarray(theory.client_gradients(p, w_star))
    assert np.abs(g_i.mean(0)).max() < 1e-12
    assert float(jnp.abs(p.full_grad(w_star)).max()) < 1e-12
    # The measured heterogeneity equals the stated one.
    np.testing.assert_allclose(np.mean(np.sum(g_i ** 2, 1)), p.zeta2,
                               rtol=1e-10)
    np.testing.assert_allclose(float(theory.heterogeneity(p, w_star)),
                               p.zeta2, rtol=1e-10)
    # full_loss / full_grad equal the mean of the client losses.
    x = jnp.asarray(p.data.x).reshape(N, n, -1)
    y = jnp.asarray(p.data.y).reshape(N, n)

    def mean_loss(w):
      return jnp.mean(jax.vmap(lambda xi, yi: p.loss(w, xi, yi,
                                                     jnp.ones(n)))(x, y))
    rng = np.random.default_rng(0)
    for _ in range(3):
      w = jnp.asarray(rng.normal(size=d) * 2)
      np.testing.assert_allclose(float(p.full_loss(w)), float(mean_loss(w)),
                                 rtol=1e-11)
      np.testing.assert_allclose(p.full_grad(w), jax.grad(mean_loss)(w),
                                 rtol=1e-9, atol=1e-12)
      assert float(p.full_loss(w)) > p.f_star
    np.testing.assert_allclose(float(mean_loss(w_star)), p.f_star,
                               rtol=1e-12)
    m = p.metrics(w_star)
    assert float(m["grad_sq"]) < 1e-24 and abs(float(m["gap"])) < 1e-14


def test_float32_problem_matches_requested_constants():
  p = theory.least_squares(num_clients=50, examples_per_client=20, dim=10,
                           zeta2=1.0, sigma2=1.0, batch_size=5,
                           shift="linear", seed=0)
  assert p.data.x.dtype == np.float32
  np.testing.assert_allclose([p.lipschitz, p.zeta2, p.sigma2],
                             [1.0, 1.0, 1.0], rtol=1e-5)
  g = np.asarray(theory.client_gradients(p, jnp.asarray(p.w_star)),
                 np.float64)
  assert np.abs(g.mean(0)).max() < 1e-5


def test_minibatch_variance_matches_the_client_sampling():
  """sigma2 is the variance of one step of client.local_update at w*."""
  with jax.enable_x64(True):
    p = theory.least_squares(num_clients=6, examples_per_client=12, dim=3,
                             zeta2=0.5, sigma2=0.8, batch_size=3,
                             shift="linear", seed=1, dtype=np.float64)
    upd = client.local_update(p.loss, optax.sgd(1.0), batch_size=3,
                              max_examples=12, steps=1)
    x, y = jnp.asarray(p.data.x), jnp.asarray(p.data.y)
    offsets, counts = jnp.asarray(p.data.offsets), jnp.asarray(p.data.counts)
    w = jnp.asarray(p.w_star)
    K = 4000

    def one(c, k):
      ref = client.ClientRef(x, y, offsets[c], counts[c])
      res, _ = upd.update(w, ref, k, client.ClientHParams())
      return -res.delta                 # the minibatch gradient
    keys = jax.random.split(jax.random.key(0), K)
    g = jax.jit(jax.vmap(lambda c: jax.vmap(lambda k: one(c, k))(keys)))(
        jnp.arange(6))                  # (clients, K, d)
    var = jnp.mean(jnp.sum((g - g.mean(1, keepdims=True)) ** 2, -1), 1)
    # Relative standard error of a K-sample variance is about sqrt(2/K) per
    # client (2.2%); the mean over 6 clients is within 5%.
    np.testing.assert_allclose(np.mean(var), p.sigma2, rtol=0.05)
    np.testing.assert_allclose(float(theory.minibatch_variance(p, w)),
                               p.sigma2, rtol=1e-10)
    np.testing.assert_allclose(theory.effective_variance(p),
                               p.zeta2 + p.sigma2, rtol=1e-10)


def test_nonconvex_constants():
  with jax.enable_x64(True):
    p = theory.nonconvex(num_clients=10, examples_per_client=8, dim=3,
                         lipschitz=1.0, mu=0.1, nu=0.8, zeta2=0.4,
                         batch_size=2, seed=2, dtype=np.float64)
    w_star = jnp.asarray(p.w_star)
    hess = jax.jit(jax.hessian(p.full_loss))
    # L = sup ||Hess F||, attained at w*.
    np.testing.assert_allclose(np.linalg.eigvalsh(hess(w_star))[-1],
                               p.lipschitz, rtol=1e-10)
    np.testing.assert_allclose(p.lipschitz, 1.0 + 2 * 0.8, rtol=1e-9)
    rng = np.random.default_rng(0)
    lo = np.inf
    for _ in range(30):
      w = w_star + jnp.asarray(rng.normal(size=3) * 1.5)
      ev = np.linalg.eigvalsh(hess(w))
      assert ev[-1] <= p.lipschitz + 1e-9
      assert ev[0] >= p.mu - p.nu / 2 - 1e-9
      lo = min(lo, ev[0])
      assert float(p.full_loss(w)) >= p.f_star
    # Non-convex: negative curvature where |w - w*| = 1 in every coordinate.
    assert np.linalg.eigvalsh(hess(w_star + 1.0))[0] < 0
    assert float(jnp.abs(p.full_grad(w_star)).max()) < 1e-12
    np.testing.assert_allclose(float(theory.heterogeneity(p, w_star)),
                               p.zeta2, rtol=1e-9)
    w = w_star + 0.7
    np.testing.assert_allclose(p.full_grad(w), jax.grad(p.full_loss)(w),
                               rtol=1e-10)
    x = jnp.asarray(p.data.x).reshape(10, 8, -1)
    y = jnp.asarray(p.data.y).reshape(10, 8)
    per_client = jax.vmap(lambda xi, yi: p.loss(w, xi, yi, jnp.ones(8)))(x, y)
    np.testing.assert_allclose(float(per_client.mean()),
                               float(p.full_loss(w)), rtol=1e-11)


def test_problem_input_errors():
  kw = dict(num_clients=4, examples_per_client=6, dim=2, batch_size=2)
  with pytest.raises(ValueError, match="lipschitz must be a number > 0"):
    theory.least_squares(**{**kw, "lipschitz": 0.0})
  with pytest.raises(ValueError, match="mu must be in"):
    theory.least_squares(**kw, lipschitz=1.0, mu=2.0)
  with pytest.raises(ValueError, match="batch_size must be in"):
    theory.least_squares(**{**kw, "batch_size": 7})
  with pytest.raises(ValueError, match="examples_per_client must be >= dim"):
    theory.least_squares(**{**kw, "dim": 7})
  with pytest.raises(ValueError, match="sigma2 must be >= "):
    theory.least_squares(**kw, zeta2=1.0, sigma2=1e-4)
  # without room for noise the one value is named (it said "must be >= 0",
  # got 0.5)
  with pytest.raises(ValueError, match=r"sigma2 must be 0 for this problem "
                     r".*examples_per_client \(3\) <= dim \(3\) no other "
                     r"value is possible: give sigma2=None"):
    theory.least_squares(num_clients=4, examples_per_client=3, dim=3,
                         sigma2=0.5, batch_size=1, shift="linear")
  with pytest.raises(ValueError, match="shift must be one of"):
    theory.least_squares(**kw, shift="bogus")
  with pytest.raises(ValueError, match="zeta2 must be a number >= 0"):
    theory.least_squares(**kw, zeta2=-1.0)
  with pytest.raises(ValueError, match="nu must be a number >= 0"):
    theory.nonconvex(**kw, nu=-1.0)
  # an integer dtype rounded the data: L = 0.39 for a requested 1
  for make in (theory.least_squares, theory.nonconvex):
    for bad in (np.int32, "bogus", bool):
      with pytest.raises(ValueError, match=r"dtype must be float32 or "
                         r"float64, got "):
        make(**kw, dtype=bad)
  # parameters as a (dim, 1) column broadcast to a (b, b) residual: a loss
  # of 42.19 for 4.84 at w*, and runs to other parameters without an error
  for make in (theory.least_squares, theory.nonconvex):
    p = make(**kw)
    x, y = p.data.x[:6], p.data.y[:6]
    with pytest.raises(ValueError, match=r"this problem's parameters w must "
                       r"have shape \(2,\), got \(2, 1\)"):
      p.loss(jnp.zeros((2, 1)), x, y, jnp.ones(6))
    assert np.isfinite(float(p.loss(jnp.zeros(2), x, y, jnp.ones(6))))


@pytest.mark.parametrize("N", [10, 40])
def test_sampling_variance_closed_forms(N):
  p = theory.least_squares(num_clients=N, examples_per_client=4, dim=3,
                           zeta2=2.0, batch_size=2, seed=N)
  u = np.asarray(theory.client_gradients(p, jnp.asarray(p.w_star)),
                 np.float64)
  sigma2 = float(np.mean(np.sum((u - u.mean(0)) ** 2, 1)))
  np.testing.assert_allclose(sigma2, 2.0, rtol=1e-4)
  trials = 40_000
  for m in (1, 3, N // 2, N):
    for replace in (True, False):
      emp = theory.empirical_sampling_variance(u, m, replace=replace,
                                               num_trials=trials, seed=m)
      exact = theory.sampling_variance(sigma2, m, N, replace=replace)
      if exact == 0.0:
        assert emp < 1e-20
        continue
      # Relative standard error of the Monte-Carlo mean of a squared norm in
      # d = 3 dimensions is below sqrt(2 / trials) (0.7%): allow 4%.
      np.testing.assert_allclose(emp, exact, rtol=0.04)
  with pytest.raises(ValueError, match="m must be <="):
    theory.sampling_variance(1.0, N + 1, N, replace=False)


def _small_problem():
  return theory.least_squares(num_clients=20, examples_per_client=6, dim=3,
                              zeta2=0.5, sigma2=0.5, batch_size=2,
                              shift="linear", seed=4, dtype=np.float64)


def test_tracker_matches_reference_and_hand_drift():
  with jax.enable_x64(True):
    p = _small_problem()
    upd = client.local_update(p.loss, optax.sgd(0.2), batch_size=2,
                              max_examples=6, steps=2)
    s_fn = staleness.cutoff(staleness.polynomial(0.5), 5)
    rule = rules.fedasync(0.6, s_fn)
    dm = delays.delay_model(delays.device_speeds("lognormal", 20, seed=0),
                            np.ones(20))
    sched = scheduler.asynchronous(dm, num_updates=80, concurrency=6, seed=1,
                                   max_staleness=5)
    assert sched.dropped.any()
    key = jax.random.key(5)
    w0 = jnp.zeros(3)
    coords = lambda w: {f"w{i}": w[i] for i in range(3)}  # noqa: E731
    # A rate scale that float32 rounds (the tracker's inputs were float32).
    n = sched.num_tasks
    hp = client.ClientHParams(np.full(n, 1 / 3), np.full(n, 0.1))
    ref = reference.run(rule, upd, w0, p.data, sched, key=key, hparams=hp,
                        eval_fn=coords, eval_every=1)
    out = theory.track(rule, upd, w0, p.data, sched, key=key, hparams=hp,
                       metrics=p.metrics)
    np.testing.assert_allclose(out.state.params, ref.state.params,
                               rtol=1e-13)
    np.testing.assert_array_equal(out.arrivals["version"],
                                  ref.arrivals["version"])
    np.testing.assert_array_equal(out.arrivals["applied"],
                                  ref.arrivals["applied"])
    # Parameters at every version, from the reference.
    W = np.stack([theory.per_version(ref.evals, f"test_w{i}")
                  for i in range(3)], 1)
    assert W.shape[0] == int(ref.state.version) + 1
    tau = ref.arrivals["staleness"]
    t_before = ref.arrivals["version"] - ref.arrivals["applied"]
    R = out.stats["ring_size"]
    assert R == tau[ref.arrivals["applied"]].max() + 1
    hand = np.array([np.sum((W[t] - W[t - k]) ** 2) if k < R else np.nan
                     for t, k in zip(t_before, tau)])
    np.testing.assert_allclose(out.arrivals["drift"], hand, rtol=1e-10,
                               atol=1e-15)
    assert np.isnan(out.arrivals["drift"][tau >= R]).all()
    # Exact metrics at every version.
    g_ref = np.array([float(p.metrics(jnp.asarray(w))["grad_sq"]) for w in W])
    np.testing.assert_allclose(out.per_version("grad_sq"), g_ref, rtol=1e-10)
    st = theory.staleness_stats(ref)
    applied = ref.arrivals["applied"]
    assert st.tau_max == out.stats["tau_max"] == tau[applied].max()
    np.testing.assert_allclose(st.tau_avg, tau[applied].mean())
    assert st.num_dropped == int((~applied).sum()) > 0
    assert theory.staleness_stats(sched).tau_max == st.tau_max


def test_executor_eval_every_version_equals_tracker():
  p = theory.least_squares(num_clients=30, examples_per_client=8, dim=4,
                           zeta2=0.5, sigma2=0.5, batch_size=2,
                           shift="linear", seed=0)
  upd = client.local_update(p.loss, optax.sgd(0.3), batch_size=2,
                            max_examples=8, steps=1)
  dm = delays.delay_model(np.ones(30), np.ones(30))
  sched = scheduler.asynchronous(dm, num_updates=150, concurrency=5, seed=0)
  rule = rules.fedasync(0.5)
  key = jax.random.key(1)
  ex = executor.simulate(rule, upd, jnp.zeros(4), p.data, sched, key=key,
                         eval_fn=theory.metrics_fn(p), eval_every=1)
  tr = theory.track(rule, upd, jnp.zeros(4), p.data, sched, key=key,
                    metrics=p.metrics)
  g_ex = theory.per_version(ex.evals, "test_grad_sq")
  assert g_ex.shape == (151,)
  np.testing.assert_allclose(tr.per_version("grad_sq"), g_ex, rtol=2e-5)
  np.testing.assert_allclose(tr.per_version("gap"),
                             theory.per_version(ex.evals, "test_gap"),
                             rtol=2e-5)


def test_averaged_gradient_slope_is_about_minus_half():
  """FedAsync, bounded staleness, client step ~ 1/sqrt(T): slope ~ -1/2.

  The seeds and horizons run as one vmapped tracker program (the tracker
  equals the executor, see above; the experiment uses ``sweep``).
  """
  p = theory.least_squares(num_clients=50, examples_per_client=10, dim=5,
                           lipschitz=1.0, mu=0.25, zeta2=1.0, sigma2=1.0,
                           batch_size=5, shift="linear", w_star_scale=3.0,
                           seed=0)
  lr0, T0 = 0.8 / p.client_lipschitz, 200
  upd = client.local_update(p.loss, optax.sgd(lr0), batch_size=5,
                            max_examples=10, steps=1)
  dm = delays.delay_model(np.ones(50), np.ones(50), jitter="exponential")
  horizons = [200, 400, 800, 1600]
  seeds = 8
  rule = rules.fedasync(0.5, staleness.cutoff(staleness.constant(), 8))
  scheds, hps = [], []
  for j, T in enumerate(horizons):
    for s in range(seeds):
      sc = scheduler.asynchronous(dm, num_updates=T, concurrency=4,
                                  max_staleness=8, seed=1000 * j + s)
      scheds.append(sc)
      hps.append(tasks.task_hparams(sc, lr_scale=np.sqrt(T0 / T)))
  outs = theory.track_many(rule, upd, jnp.zeros(5), p.data, scheds,
                           keys=jax.random.split(jax.random.key(0),
                                                 len(scheds)),
                           hparams=hps, metrics=p.metrics)
  vals = np.zeros((seeds, len(horizons)))
  for i, o in enumerate(outs):
    j, s = divmod(i, seeds)
    assert o.stats["tau_max"] <= 8
    vals[s, j] = o.per_version("grad_sq")[:-1].mean()
  fit = theory.loglog_slope(horizons, vals, seed=0)
  assert fit.ci_low <= fit.slope <= fit.ci_high
  assert abs(fit.slope + 0.5) < 0.12, fit


def test_bounds_are_consistent():
  kw = dict(lipschitz=2.0, f0_gap=3.0, sigma2=0.5)
  T = np.array([10.0, 100.0, 1e4])
  eps = theory.koloskova_constant_rate(T, tau_c=4, tau_max=16, **kw)
  np.testing.assert_allclose(theory.koloskova_constant_complexity(
      eps, tau_c=4, tau_max=16, **kw), T, rtol=1e-12)
  eps_a = theory.koloskova_adaptive_rate(T, tau_avg=8.0, **kw)
  np.testing.assert_allclose(theory.koloskova_adaptive_complexity(
      eps_a, tau_avg=8.0, **kw), T, rtol=1e-12)
  # sqrt(tau_C tau_max) = tau_avg = 8 gives the same rate.
  np.testing.assert_allclose(eps, eps_a, rtol=1e-12)
  # Constant step g (inside Lian et al.'s condition for tau_max = 16): the
  # weighted bound equals the closed form (tau_max=0) and grows with
  # tau_max.
  for n in (25, 400):
    g = 0.002 / np.sqrt(n)
    b0 = theory.delayed_sgd_bound(np.full(n, g), tau_max=0, **kw)
    np.testing.assert_allclose(b0, theory.sqrt_t_bound(
        n, gamma0=0.002, tau_max=0, **kw), rtol=1e-12)
    b16 = theory.delayed_sgd_bound(np.full(n, g), tau_max=16, **kw)
    assert b0 < b16 <= theory.sqrt_t_bound(n, gamma0=0.002, tau_max=16, **kw)
  assert theory.delayed_sgd_bound([0.01] * 3, tau_max=2, c=2.0, **kw) == (
      2 * theory.delayed_sgd_bound([0.01] * 3, tau_max=2, **kw))
  np.testing.assert_allclose(theory.drift_bound(
      np.array([0, 1, 3]), gamma=0.5, sigma2=2.0, grad_sq=1.0),
      [0.0, 1.5, 7.5])
  assert theory.fit_constant([3.0, 12.0], [1.0, 4.0]) == pytest.approx(3.0)
  with pytest.raises(ValueError, match="lipschitz must be a number > 0"):
    theory.koloskova_constant_rate(10, lipschitz=0.0, f0_gap=1.0, sigma2=1.0,
                                   tau_c=1, tau_max=1)
  with pytest.raises(ValueError, match="T must be > 0"):
    theory.sqrt_t_bound(0.0, gamma0=1.0, tau_max=0, **kw)
  with pytest.raises(ValueError, match="tau_max must be an integer >= 0"):
    theory.delayed_sgd_bound([0.1], tau_max=-1, **kw)
  with pytest.raises(ValueError, match="steps must be > 0"):
    theory.delayed_sgd_bound([0.1, 0.0], tau_max=1, **kw)
  # a 3 x 3 array of steps was flattened into 9 updates
  with pytest.raises(ValueError, match=r"steps must be a number or a 1-D "
                     r"array, got shape \(3, 3\)"):
    theory.delayed_sgd_bound(np.full((3, 3), 0.01), tau_max=1, **kw)
  with pytest.raises(ValueError, match=r"measured and predicted must have "
                     r"the same shape, got \(2, 3\) and \(3, 2\)"):
    theory.fit_constant(np.ones((2, 3)), np.ones((3, 2)))


def test_koloskova_forms_match_the_theorems():
  """arXiv:2206.08307: Theorem 6 has sqrt(tau_C tau_max) (tau_C the
  concurrency), Corollary 7 sqrt(tau_avg tau_max) (constant concurrency),
  Theorem 8 tau_C and Corollary 9 tau_avg; hidden constants set to 1."""
  kw = dict(lipschitz=2.0, f0_gap=3.0, sigma2=0.5)
  # By hand: L F0 s2 / eps^2 = 2*3*0.5/0.25 = 12; L F0 sqrt(4*9) / eps = 72.
  assert theory.koloskova_constant_complexity(
      0.5, tau_c=4, tau_max=9, **kw) == pytest.approx(84.0, rel=1e-12)
  # A rare straggler: concurrency 4, average delay 1, largest delay 9.
  # Theorem 6's term is sqrt(4*9) = 6, Corollary 7's sqrt(1*9) = 3.
  thm6 = theory.koloskova_constant_complexity(0.5, tau_c=4, tau_max=9, **kw)
  cor7 = theory.koloskova_constant_complexity(0.5, tau_c=1, tau_max=9, **kw)
  assert thm6 - 12.0 == pytest.approx(2 * (cor7 - 12.0), rel=1e-12)
  # Theorem 8 / Corollary 9: 12 + 2*3*5/0.5 = 72.
  assert theory.koloskova_adaptive_complexity(
      0.5, tau_avg=5, **kw) == pytest.approx(72.0, rel=1e-12)
  # The rate is the exact inverse, about sqrt(A/T) + B/(2T) for large T
  # (A = L F0 s2 = 3, B = L F0 sqrt(tau_C tau_max) = 36).
  T = 1e8
  eps = theory.koloskova_constant_rate(T, tau_c=4, tau_max=9, **kw)
  np.testing.assert_allclose(eps, np.sqrt(3.0 / T) + 18.0 / T, rtol=1e-6)


def test_koloskova_adaptive_condition_by_hand():
  """Theorem 8, eq. (11): eta <= 1/(4L) while tau_t <= tau_C, then
  eta_t <= min(eta, 1/(4 L tau_t))."""
  ok = theory.koloskova_adaptive_condition([0.25, 0.25, 0.05], [0, 2, 5],
                                           lipschitz=1.0, tau_c=2)
  assert ok.holds and ok.value == pytest.approx(1.0) and "Theorem 8" in (
      ok.statement)
  big = theory.koloskova_adaptive_condition([0.3, 0.3], [0, 1],
                                            lipschitz=1.0, tau_c=2)
  assert not big.holds and big.value == pytest.approx(1.2)
  # Beyond tau_C: allowed min(0.1, 1/(4*10)) = 0.025, taken 0.1.
  late = theory.koloskova_adaptive_condition([0.1, 0.1], [0, 10],
                                             lipschitz=1.0, tau_c=2)
  assert not late.holds and late.value == pytest.approx(4.0)
  # The base step must be the same for every tau_t <= tau_C.
  mixed = theory.koloskova_adaptive_condition([0.2, 0.1], [0, 1],
                                              lipschitz=1.0, tau_c=2)
  assert not mixed.holds and mixed.value <= 1.0
  with pytest.raises(ValueError, match="same nonempty shape"):
    theory.koloskova_adaptive_condition([0.1], [0, 1], lipschitz=1.0,
                                        tau_c=1)


def test_the_librarys_own_rules_meet_their_conditions_in_float32():
  """``staleness.koloskova``'s float32 steps overshoot 1 / (4 L tau) by
  about 1e-7 (they were judged against 1e-12: outside Theorem 8); a
  condition allows its steps' own rounding, and float64 keeps 1e-12."""
  g, tau = 0.05, np.arange(120)
  w = np.asarray(staleness.koloskova(tau_c=8, lipschitz=1.0, lr=g)(tau))
  assert w.dtype == np.float32
  c = theory.koloskova_adaptive_condition(g * w, tau, lipschitz=1.0,
                                          tau_c=8)
  assert c.value > 1.0 and c.holds
  over = np.float64(g * w) * (1 + 1e-9)
  assert not theory.koloskova_adaptive_condition(
      over, tau, lipschitz=1.0, tau_c=8).holds
  steps = np.full(20, theory.delayed_sgd_max_step(lipschitz=1.0, tau_max=3))
  assert theory.delayed_sgd_condition(steps.astype(np.float32) * (1 + 1e-7),
                                      lipschitz=1.0, tau_max=3).holds
  assert not theory.delayed_sgd_condition(steps * (1 + 1e-9), lipschitz=1.0,
                                          tau_max=3).holds
  # the bound checks its condition on the steps as given (their dtype)
  assert theory.delayed_sgd_bound(
      steps.astype(np.float32) * (1 + 1e-7), lipschitz=1.0, f0_gap=1.0,
      sigma2=1.0, tau_max=3) > 0
  # Every step 0 (all dropped): nothing exceeds (it was 0/0 = nan).
  zero = theory.koloskova_adaptive_condition([0.0, 0.0], [0, 5],
                                             lipschitz=1.0, tau_c=2)
  assert zero.holds and zero.value == 0.0
  late = theory.koloskova_adaptive_condition([0.0, 0.1], [0, 5],
                                             lipschitz=1.0, tau_c=2)
  assert not late.holds and late.value == np.inf


def test_bound_options_are_checked():
  """``check="no"`` ran the check (a true string); ``sqrt_t_bound`` took
  ``tau_max=2.5``, which ``delayed_sgd_bound`` refuses."""
  kw = dict(lipschitz=1.0, f0_gap=1.0, sigma2=1.0)
  with pytest.raises(ValueError, match="check must be True or False, got "
                     "'no'"):
    theory.delayed_sgd_bound([0.01] * 5, tau_max=2, check="no", **kw)
  with pytest.raises(ValueError, match="check must be True or False"):
    theory.sqrt_t_bound(100.0, gamma0=0.1, tau_max=2, check=0, **kw)
  with pytest.raises(ValueError, match=r"tau_max must be an integer >= 0, "
                     r"got 2.5"):
    theory.sqrt_t_bound(100.0, gamma0=0.1, tau_max=2.5, **kw)


def test_delayed_sgd_condition_and_bound_by_hand():
  """Lian et al. 2015, Theorem 1 (M = 1): the condition, the bound, and a
  bound outside its condition raises."""
  # L g_t + 2 L^2 tau sum_{k=1}^{tau} g_{t+k}, L = 2, tau = 1:
  # t=0: 0.2 + 8*0.2 = 1.8; t=1: 0.4 + 8*0.3 = 2.8; t=2: 0.6.
  c = theory.delayed_sgd_condition([0.1, 0.2, 0.3], lipschitz=2.0,
                                   tau_max=1)
  assert not c.holds and c.value == pytest.approx(2.8) and c.limit == 1.0
  kw = dict(lipschitz=1.0, f0_gap=1.0, sigma2=1.0)
  # Inside (0.1 + 2*0.1 = 0.3): (2 F0 + L s2 sum g^2 + 2 L^2 s2 sum_t g_t
  # sum_{j=t-1}^{t-1} g_j^2) / sum g = (2 + 0.03 + 2*0.002) / 0.3.
  assert theory.delayed_sgd_bound([0.1] * 3, tau_max=1, **kw) == (
      pytest.approx(2.034 / 0.3, rel=1e-12))
  with pytest.raises(ValueError, match=r"outside the validity condition "
                     r"\(arXiv:1506.08272 Theorem 1.*reaches 2.8 > 1"):
    theory.delayed_sgd_bound([0.1, 0.2, 0.3], lipschitz=2.0, f0_gap=1.0,
                             sigma2=1.0, tau_max=1)
  assert np.isfinite(theory.delayed_sgd_bound(
      [0.1, 0.2, 0.3], lipschitz=2.0, f0_gap=1.0, sigma2=1.0, tau_max=1,
      check=False))
  # The largest constant step: 1 / (L (1 + 2 L tau^2)) = 1/74 for L=2, tau=3.
  g = theory.delayed_sgd_max_step(lipschitz=2.0, tau_max=3)
  assert g == pytest.approx(1 / 74)
  assert theory.delayed_sgd_condition(np.full(50, g), lipschitz=2.0,
                                      tau_max=3).value == pytest.approx(1.0)
  assert not theory.delayed_sgd_condition(np.full(50, 1.01 * g),
                                          lipschitz=2.0, tau_max=3).holds
  # sqrt_t_bound checks the same condition for g = gamma0 / sqrt(T).
  with pytest.raises(ValueError, match="reaches 51.3 > 1"):
    theory.sqrt_t_bound(100.0, gamma0=1.0, tau_max=16, **kw)
  assert theory.sqrt_t_bound(100.0, gamma0=1.0, tau_max=16, check=False,
                             **kw) > 0
  assert theory.sqrt_t_bound(1e6, gamma0=0.01, tau_max=16, **kw) > 0


def test_delayed_sgd_bound_holds_for_asynchronous_sgd_inside_its_condition():
  """Asynchronous SGD (fedbuff(1) adding one SGD step's delta) with pinned
  staleness and a step inside Lian et al.'s condition: the measured
  average ||grad F||^2 is below the bound with explicit constants (c = 1),
  sigma^2 the largest measured noise over the iterates."""
  p = theory.least_squares(num_clients=20, examples_per_client=6, dim=3,
                           zeta2=0.5, sigma2=0.5, batch_size=2,
                           shift="linear", w_star_scale=3.0, seed=4)
  tau, T, seeds = 2, 300, 6
  g = 0.9 * theory.delayed_sgd_max_step(lipschitz=p.lipschitz, tau_max=tau)
  upd = client.local_update(p.loss, optax.sgd(g), batch_size=2,
                            max_examples=6, steps=1)
  dm = delays.delay_model(np.ones(20), np.ones(20), jitter="none")
  scheds = [scheduler.asynchronous(dm, num_updates=T, concurrency=tau + 1,
                                   max_staleness=tau, seed=s)
            for s in range(seeds)]

  def metrics(w):
    return {"grad_sq": p.metrics(w)["grad_sq"],
            "noise": theory.heterogeneity(p, w)
            + theory.minibatch_variance(p, w)}
  outs = theory.track_many(rules.fedbuff(1, optax.sgd(1.0)), upd,
                           jnp.zeros(3), p.data, scheds,
                           keys=jax.random.split(jax.random.key(0), seeds),
                           metrics=metrics)
  assert all(o.stats["tau_max"] == tau for o in outs)
  avg = np.array([o.per_version("grad_sq")[:-1].mean() for o in outs])
  s2 = max(float(o.per_version("noise").max()) for o in outs)
  f0 = float(p.full_loss(jnp.zeros(3))) - p.f_star
  bound = theory.delayed_sgd_bound(np.full(T, g), lipschitz=p.lipschitz,
                                   f0_gap=f0, sigma2=s2, tau_max=tau)
  assert avg.mean() + 3 * avg.std(ddof=1) / np.sqrt(seeds) < bound
  # Ten times that step is outside the condition: no bound is given.
  with pytest.raises(ValueError, match="outside the validity condition"):
    theory.delayed_sgd_bound(np.full(T, 10 * g), lipschitz=p.lipschitz,
                             f0_gap=f0, sigma2=s2, tau_max=tau)


@pytest.mark.parametrize("p_true,a,b", [(0.3, 1.0, 5.0), (0.5, 1.0, 20.0),
                                        (0.7, 2.0, 10.0)])
def test_rate_fit_recovers_the_exponent(p_true, a, b):
  T = np.array([250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0])
  rng = np.random.default_rng(int(p_true * 10))
  vals = (a * T ** -p_true + b / T) * np.exp(
      rng.normal(scale=0.05, size=(24, T.size)))
  fit = theory.rate_fit(T, vals, num_boot=500, seed=1)
  assert fit.ci_low <= p_true <= fit.ci_high, fit
  # The bootstrap spread of p here is about 0.007 (p = 0.3) to 0.02 (0.7).
  assert abs(fit.p - p_true) < 0.06
  assert fit.ci_high - fit.ci_low < 0.15
  assert not fit.at_bound and fit.inverse_t
  np.testing.assert_allclose(fit.b, b, rtol=0.5)
  # It fits within the noise (p-value not small); residuals are small.
  assert fit.quality.p_value > 0.01 and fit.quality.dof == T.size - 3
  assert fit.quality.rmse < 0.03
  assert fit.boot.shape == (500,)


def test_rate_fit_interval_covers_the_truth():
  """Over 30 synthetic data sets the 95% interval covers p in at least 24
  (a broken bootstrap, e.g. one too narrow, covers far fewer)."""
  T = np.array([250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0])
  hits = 0
  for r in range(30):
    rng = np.random.default_rng(100 + r)
    vals = (T ** -0.5 + 15.0 / T) * np.exp(rng.normal(scale=0.05,
                                                      size=(16, T.size)))
    fit = theory.rate_fit(T, vals, num_boot=200, seed=r)
    hits += fit.ci_low <= 0.5 <= fit.ci_high
  assert hits >= 24, hits


def test_goodness_of_fit_tells_a_line_from_the_curve():
  """On a curved log-log plot (slow T^-1/2 plus a 1/T transient) the
  straight line is rejected and its exponent is too steep; the curve fits
  and recovers 1/2. On a pure power law both fit."""
  T = np.array([500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0])
  rng = np.random.default_rng(7)
  noise = np.exp(rng.normal(scale=0.05, size=(32, T.size)))
  curved = (T ** -0.5 + 40.0 / T) * noise
  line = theory.loglog_slope(T, curved, num_boot=200)
  q_line = theory.goodness_of_fit(
      T, curved, np.exp(line.intercept) * T ** line.slope, num_params=2)
  curve = theory.rate_fit(T, curved, num_boot=200)
  assert -line.slope > 0.6 and line.ci_high < -0.55
  assert q_line.p_value < 1e-3 and q_line.dof == 4
  assert curve.quality.p_value > 0.01
  assert curve.ci_low <= 0.5 <= curve.ci_high
  power = theory.rate_fit(T, curved, inverse_t=False, num_boot=200)
  assert power.quality.p_value < 1e-3
  # A pure power law: B is about 0 and both models fit.
  pure = 2.0 * T ** -0.5 * noise
  c2 = theory.rate_fit(T, pure, num_boot=200)
  p2 = theory.rate_fit(T, pure, inverse_t=False, num_boot=200)
  assert abs(p2.p - 0.5) < 0.02 and p2.quality.p_value > 0.01
  assert c2.ci_low <= 0.5 <= c2.ci_high and c2.b * 2 / T[0] < 0.05 * (
      2.0 * T[0] ** -0.5)
  # Residual bookkeeping: z = log residual / se, chi2 = sum z^2.
  q = c2.quality
  np.testing.assert_allclose(q.z, q.log_residuals / q.se)
  assert q.chi2 == pytest.approx(float(np.sum(q.z ** 2)))


def test_chi2_tail_probability():
  from fedasync_jax.theory import fits
  # 5% critical values of chi-square with 1..5 degrees of freedom.
  for x, k in [(3.841459, 1), (5.991465, 2), (7.814728, 3), (9.487729, 4),
               (11.070498, 5)]:
    assert fits._chi2_sf(x, k) == pytest.approx(0.05, abs=1e-6)
  assert fits._chi2_sf(0.0, 3) == 1.0
  assert fits._chi2_sf(2.0, 2) == pytest.approx(np.exp(-1.0))
  assert np.isnan(fits._chi2_sf(1.0, 0))


def test_rate_fit_and_goodness_of_fit_inputs():
  T = np.array([100.0, 200.0, 400.0])
  v = T ** -0.5
  with pytest.raises(ValueError, match="at least 3 distinct horizons"):
    theory.rate_fit(T[:2], v[:2])
  assert theory.rate_fit(T[:2], v[:2], inverse_t=False,
                         num_boot=5).p == pytest.approx(0.5, abs=1e-6)
  with pytest.raises(ValueError, match=r"values must have shape \(seeds, 3\)"):
    theory.rate_fit(T, np.ones((2, 4)))
  with pytest.raises(ValueError, match="values must be > 0"):
    theory.rate_fit(T, [0.1, 0.0, 0.1])
  with pytest.raises(ValueError, match="T must be > 0"):
    theory.rate_fit([0.0, 1.0, 2.0], v)
  with pytest.raises(ValueError, match="p_range must satisfy"):
    theory.rate_fit(T, v, p_range=(0.5, 0.5))
  with pytest.raises(ValueError, match="p_range must satisfy"):
    theory.rate_fit(T, v, p_range=(-0.1, 1.0))
  with pytest.raises(ValueError, match="p_range must be a pair"):
    theory.rate_fit(T, v, p_range=0.5)
  with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\)"):
    theory.rate_fit(T, v, level=0.0)
  with pytest.raises(ValueError, match="num_boot must be an integer >= 1"):
    theory.rate_fit(T, v, num_boot=0)
  # An exponent outside p_range ends at its edge and says so.
  assert theory.rate_fit(T, T ** -1.5, p_range=(0.0, 1.0),
                         num_boot=5).at_bound
  with pytest.raises(ValueError, match=r"model must have shape \(3,\)"):
    theory.goodness_of_fit(T, v, [1.0, 2.0], num_params=1)
  with pytest.raises(ValueError, match="model must be > 0"):
    theory.goodness_of_fit(T, v, [1.0, -1.0, 1.0], num_params=1)
  one = theory.goodness_of_fit(T, v, v, num_params=1)
  assert one.rmse == 0.0 and np.isnan(one.chi2) and np.isnan(one.p_value)


def test_loglog_slope_interval():
  rng = np.random.default_rng(0)
  T = np.array([100.0, 200.0, 400.0, 800.0, 1600.0])
  vals = T ** -0.5 * np.exp(rng.normal(scale=0.2, size=(40, 5)))
  fit = theory.loglog_slope(T, vals, num_boot=500, seed=1)
  assert fit.ci_low < -0.5 < fit.ci_high
  assert fit.ci_high - fit.ci_low < 0.1
  assert fit.seed_slopes.shape == (40,)
  assert abs(fit.seed_mean + 0.5) < 3 * fit.seed_se + 1e-3
  with pytest.raises(ValueError, match="values must have shape"):
    theory.loglog_slope(T, vals[:, :3])
  with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\)"):
    theory.loglog_slope(T, vals, level=1.0)


def test_weighted_average_and_stats_inputs():
  assert theory.weighted_average([1.0, 2.0]) == 1.5
  with pytest.raises(ValueError, match="weights must have the shape"):
    theory.weighted_average([1.0, 2.0], [1.0])
  s = theory.staleness_stats({"staleness": np.array([3, 1]),
                              "applied": np.array([False, False])})
  assert s.num_applied == 0 and s.num_dropped == 2


def test_package_reexports_every_module_name():
  from fedasync_jax.theory import bounds, fits, measures, problems, tracking
  for name in theory.__all__:
    assert hasattr(theory, name), name
  modules = (bounds, fits, measures, problems, tracking)
  public = {n for m in modules for n in vars(m)
            if not n.startswith("_") and getattr(vars(m)[n], "__module__",
                                                 None) == m.__name__}
  assert public <= set(theory.__all__), public - set(theory.__all__)
  assert theory.least_squares is problems.least_squares
  assert theory.tracker is tracking.tracker


def test_arguments_follow_the_shared_checks():
  # core.checks: an integer is an int or an integral float, never a bool;
  # a number is never a bool.
  kw = dict(examples_per_client=6, dim=2, batch_size=2, zeta2=0.3,
            dtype=np.float64)
  a = theory.least_squares(num_clients=4.0, **kw)
  b = theory.least_squares(num_clients=4, **kw)
  np.testing.assert_array_equal(a.data.x, b.data.x)
  assert a.num_clients == 4 and a.lipschitz == b.lipschitz
  with pytest.raises(ValueError, match="num_clients must be an integer >= 1"):
    theory.least_squares(num_clients=True, **kw)
  with pytest.raises(ValueError, match="lipschitz must be a number > 0"):
    theory.least_squares(num_clients=4, lipschitz=True, **kw)
  bkw = dict(lipschitz=1.0, f0_gap=1.0, sigma2=1.0)
  assert theory.delayed_sgd_bound([0.1] * 4, tau_max=2.0, **bkw) == (
      theory.delayed_sgd_bound([0.1] * 4, tau_max=2, **bkw))
  with pytest.raises(ValueError, match="tau_max must be an integer >= 0"):
    theory.delayed_sgd_bound([0.1], tau_max=True, **bkw)
  with pytest.raises(ValueError, match="tau_max must be an integer >= 0"):
    theory.delayed_sgd_bound([0.1], tau_max=1.5, **bkw)
  assert theory.sampling_variance(1.0, 4.0, 10, replace=False) == (
      theory.sampling_variance(1.0, 4, 10, replace=False))
  with pytest.raises(ValueError, match="m must be an integer >= 1"):
    theory.sampling_variance(1.0, True, 10, replace=True)
  with pytest.raises(ValueError, match="c must be a number > 0"):
    theory.sqrt_t_bound(4.0, gamma0=1.0, tau_max=0, c=True, **bkw)
  with pytest.raises(ValueError, match="steps must be finite"):
    theory.delayed_sgd_bound([0.1, float("nan")], tau_max=0, **bkw)


def test_per_version_refuses_what_is_not_one_value_per_version():
  """Evaluations every 2 versions were returned as if at 0, 1, 2, ...;
  the metric's own name (without ``test_``) gave a bare KeyError."""
  evals = [{"version": v, "test_grad_sq": 1.0 / (v + 1)} for v in (0, 2, 4)]
  with pytest.raises(ValueError, match=r"one evaluation at every version "
                     r"0, 1, \.\.\., V \(run with eval_every=1\), got "
                     r"versions \[0, 2, 4\]"):
    theory.per_version(evals, "test_grad_sq")
  every = [{"version": v, "test_grad_sq": 1.0 / (v + 1)} for v in (1, 0, 2)]
  assert theory.per_version(every, "test_grad_sq").tolist() == [
      1.0, 0.5, 1.0 / 3]
  with pytest.raises(ValueError, match=r"metric 'grad_sq' is the column "
                     r"'test_grad_sq'"):
    theory.per_version(every, "grad_sq")
