"""Smooth (C2) body motion from sums of sinusoids, with analytic velocity, acceleration and body rate.

Six channels (x, y, z, yaw, pitch, roll), each ``f(t) = rate * t + sum_k A_k sin(w_k t + phi_k)``.
After a static start of ``static_s`` seconds the motion speeds up smoothly: ``g(t) = f(s(t - static_s))``
where the motion time ``s`` has a rate rising 0 -> 1 over ``ramp_s`` by a quintic smoothstep (C2). Unlike
blending positions, this time warp never moves faster than the motion itself.
Attitude: ``R_W_B = Rz(yaw) Ry(pitch) Rx(roll) R_V_B`` where ``R_V_B`` maps the EuRoC-like body (x up,
y right, z forward: the cameras look along body z) to a level vehicle frame (x forward, y left, z up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

R_V_B = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class Channel:
    rate: float = 0.0
    amplitude: tuple[float, ...] = ()
    omega: tuple[float, ...] = ()  # rad/s
    phase: tuple[float, ...] = ()

    def derivatives(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """f, f', f'' at times ``t`` (s)."""
        t = np.asarray(t, dtype=np.float64)
        f = self.rate * t
        df = np.full_like(t, self.rate)
        ddf = np.zeros_like(t)
        for a, w, p in zip(self.amplitude, self.omega, self.phase):
            s, c = np.sin(w * t + p), np.cos(w * t + p)
            f = f + a * s
            df = df + a * w * c
            ddf = ddf - a * w * w * s
        return f, df, ddf


@dataclass(frozen=True)
class MotionState:
    p_W: np.ndarray  # (N, 3)
    v_W: np.ndarray  # (N, 3)
    a_W: np.ndarray  # (N, 3)
    R_W_B: np.ndarray  # (N, 3, 3)
    omega_B: np.ndarray  # (N, 3) body angular rate


def _time_warp(tau: np.ndarray, duration: float):
    """Motion time s(tau) whose rate s' rises 0 -> 1 over [0, duration] by a quintic smoothstep (C2).

    s = D (2.5 x^4 - 3 x^5 + x^6) with x = tau / D, the integral of the smoothstep; after the ramp
    s = tau - D / 2. Returns s, s', s''.
    """
    if duration <= 0:
        return np.maximum(tau, 0.0), (tau >= 0).astype(float), np.zeros_like(tau)
    x = np.clip(tau / duration, 0.0, 1.0)
    s = duration * x ** 4 * (2.5 - 3 * x + x * x) + np.maximum(tau - duration, 0.0)
    ds = x ** 3 * (10 - 15 * x + 6 * x * x)
    dds = 30 * x * x * (1 - x) ** 2 / duration
    return s, ds, dds


def _rx(a):
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(a.shape + (3, 3))


def _ry(a):
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(a.shape + (3, 3))


def _rz(a):
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(a.shape + (3, 3))


@dataclass(frozen=True)
class Motion:
    channels: tuple[Channel, ...]  # x, y, z, yaw, pitch, roll
    static_s: float = 1.5
    ramp_s: float = 3.0

    def evaluate(self, t_s: np.ndarray) -> MotionState:
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        s, ds, dds = _time_warp(t - self.static_s, self.ramp_s)
        g, dg, ddg = [], [], []
        for ch in self.channels:
            f, df, ddf = ch.derivatives(s)
            g.append(f)
            dg.append(df * ds)
            ddg.append(ddf * ds * ds + df * dds)
        g, dg, ddg = np.array(g).T, np.array(dg).T, np.array(ddg).T
        yaw, pitch, roll = g[:, 3], g[:, 4], g[:, 5]
        Rz, Ry, Rx = _rz(yaw), _ry(pitch), _rx(roll)
        R_W_V = Rz @ Ry @ Rx
        # omega_V = vee(R_W_V^T dR_W_V) = Rx^T Ry^T e_z yaw' + Rx^T e_y pitch' + e_x roll'
        RxT = np.swapaxes(Rx, -1, -2)
        RyT = np.swapaxes(Ry, -1, -2)
        e_z = np.array([0.0, 0.0, 1.0])
        e_y = np.array([0.0, 1.0, 0.0])
        omega_V = (np.einsum("nij,nj->ni", RxT @ RyT, np.broadcast_to(e_z, (len(t), 3))) * dg[:, 3:4]
                   + np.einsum("nij,j->ni", RxT, e_y) * dg[:, 4:5])
        omega_V[:, 0] += dg[:, 5]
        return MotionState(g[:, :3], dg[:, :3], ddg[:, :3], R_W_V @ R_V_B, omega_V @ R_V_B)  # R_V_B^T w


def _sines(rng, center, amps, omegas, rate=0.0) -> Channel:
    """``center + sum_k a_k sin(w_k t + phi_k)`` with random phases: stays within ``center +- sum |a_k|``."""
    amps, omegas = list(amps), list(omegas)
    phase = [float(p) for p in rng.uniform(0, 2 * np.pi, len(amps))]
    return Channel(rate, tuple([center] + amps), tuple([0.0] + omegas), tuple([np.pi / 2] + phase))


# Room presets keep |x| <= 2 m and |y| <= 1.5 m (sum of amplitudes), which is >= 0.6 m from every wall and
# obstacle of :func:`scene.room` whatever the random phases.


def mav(seed: int, static_s: float = 1.5) -> Motion:
    """EuRoC-like flight in the room: about 0.7 m/s on average, at most ~1.2 m/s, yaw rates below 1 rad/s.

    Near-equal speed amplitudes on x and y (a * w) keep the speed steady; their sum bounds the peak.
    """
    rng = np.random.default_rng(seed)
    return Motion((
        _sines(rng, 0.0, [1.4, 0.12], [0.5, 1.1]),
        _sines(rng, 0.0, [1.05, 0.1], [0.65, 1.3]),
        _sines(rng, 1.4, [0.3, 0.05], [0.45, 1.2]),
        _sines(rng, 0.0, [1.0, 0.25], [0.6, 1.3]),
        _sines(rng, 0.0, [0.06, 0.03], [0.7, 1.9]),
        _sines(rng, 0.0, [0.06, 0.03], [0.8, 1.7]),
    ), static_s)


def handheld(seed: int, static_s: float = 1.5) -> Motion:
    """Walking with a handheld rig (about 0.65 m/s): fast turns (peaks above 2 rad/s) and a 9-13 Hz shake."""
    rng = np.random.default_rng(seed + 100)
    return Motion((
        _sines(rng, 0.0, [1.5, 0.3, 0.008], [0.4, 1.2, 11.0]),
        _sines(rng, 0.0, [1.0, 0.3, 0.008], [0.5, 1.5, 13.0]),
        _sines(rng, 1.5, [0.2, 0.03, 0.01], [0.6, 4.0, 12.0]),
        _sines(rng, 0.0, [1.2, 0.4, 0.03], [0.7, 2.5, 9.0]),
        _sines(rng, 0.0, [0.2, 0.08, 0.025], [0.9, 3.0, 10.0]),
        _sines(rng, 0.0, [0.15, 0.06, 0.025], [0.8, 3.5, 9.0]),
    ), static_s)


def loop(seed: int, static_s: float = 1.5, period_s: float = 60.0) -> Motion:
    """An ellipse (about 50 m) around the hall's pillars, once per ``period_s`` (0.8 m/s): places are revisited."""
    rng = np.random.default_rng(seed + 200)
    w = 2 * np.pi / period_s
    return Motion((
        Channel(0.0, (11.0, 0.1), (w, 3 * w), (np.pi / 2, 0.0)),  # x = 11 cos(wt)
        Channel(0.0, (1.7, 0.05), (w, 2 * w), (0.0, 0.0)),  # y = 1.7 sin(wt)
        _sines(rng, 1.5, [0.25], [0.3]),
        Channel(w, (np.pi / 2, 0.15), (0.0, 0.8), (np.pi / 2, 0.0)),  # yaw ~ heading
        _sines(rng, 0.0, [0.05], [0.6]),
        _sines(rng, 0.0, [0.05], [0.7]),
    ), static_s)


MOTIONS = {"mav": mav, "handheld": handheld, "loop": loop}
