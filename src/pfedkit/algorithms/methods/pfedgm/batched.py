"""pFedGM's local updates of several clients at once (the simulator's batched path): the body
and navigator of every client trained together (`toolkit.batched_training`), on the same
objective as the serial `PFedGM.local_update`, L_shared + lambda_local * L_local, with padded
samples weighted 0. The steps around the training stay per client and without gradients: the
personal means (local fusion under the received body) before, the statistic extractor under
the client's trained body after. Privacy is off on this path (`Algorithm.batching_blocker`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pfedkit.algorithms.methods.pfedgm.client import _prior_on, personal_gaussian, statistic_extractor
from pfedkit.algorithms.methods.pfedgm.keys import ANCHORS, BANK_Y, BANK_Z, GAIN, LOG_SCALE, PRIOR, STATS
from pfedkit.algorithms.methods.pfedgm.navigator import (
    Navigator,
    anchors_from_coords,
    local_objective,
    shared_objective,
    to_coords,
)
from pfedkit.algorithms.protocol import ClientUpdate, RoundContext
from pfedkit.algorithms.toolkit.batched_training import (
    ClientRows,
    constants_of,
    model_call,
    parameter_names,
    stack_payloads,
    train_together,
    unstack,
)
from pfedkit.algorithms.toolkit.training import features_in_batches
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData
from pfedkit.stats import GlobalPrior

if TYPE_CHECKING:
    from pfedkit.algorithms.methods.pfedgm.algorithm import PFedGM

MEANS = "personal_means"
"""Name of the per-client (C, d) personal means inside the batched loss (never a payload key)."""


def personal_means_of(algo: PFedGM, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext
                      ) -> tuple[Tensor | None, Payload, dict[str, float]]:
    """The client's personal means (C, d) float32 under the received body (None when L_local is
    off or the client has no data), its new state (with the gains) and metrics, as in the serial
    update. Loads the broadcast body into the workspace model."""
    algo.load({k: broadcast[k] for k in algo.model_keys})
    new_state, metrics = dict(state), {}
    if not (algo.hp.lambda_local > 0 and data.num_train):
        return None, new_state, metrics
    prior = GlobalPrior.from_payload(broadcast, PRIOR)
    z0 = features_in_batches(algo.model, data.x_train)
    personal = personal_gaussian(z0, data.y_train.to(z0.device), _prior_on(prior, z0.device), algo.hp, ctx.generator)
    new_state[GAIN] = personal.gain.float().cpu()
    held = data.class_counts("train").to(personal.gain.device) > 0
    metrics["mean_gain"] = float(personal.gain[held].mean())
    return personal.means.to(device=ctx.device, dtype=torch.float32), new_state, metrics


def local_updates_together(algo: PFedGM, broadcasts: list[Payload], states: list[Payload], datas: list[ClientData],
                           ctxs: list[RoundContext]) -> list[ClientUpdate]:
    """`PFedGM.local_update` for several clients of a round >= 1, their training batched."""
    device, model, hp = ctxs[0].device, algo.model, algo.hp
    prepared = [personal_means_of(algo, b, s, d, c) for b, s, d, c in zip(broadcasts, states, datas, ctxs)]
    use_local = any(means is not None for means, _, _ in prepared)
    names = parameter_names(model, algo.model_keys)
    nav_keys = [ANCHORS, LOG_SCALE] if hp.navigator else []
    start = {**stack_payloads(broadcasts, names, device),
             **{k: t.to(torch.float32) for k, t in stack_payloads(broadcasts, nav_keys, device).items()}}
    if hp.navigator:  # the navigator trains in its coordinates (`navigator.to_coords`)
        start[ANCHORS] = to_coords(start[ANCHORS], start[LOG_SCALE], hp.navigator_coords, hp.navigator_step)
    per_client, shared = constants_of(broadcasts, [BANK_Z, BANK_Y], device)
    for bank in (per_client, shared):
        if BANK_Z in bank:
            bank[BANK_Z] = bank[BANK_Z].to(torch.float32)
    if use_local:
        zeros = torch.zeros(algo.num_classes, model.feature_dim, device=device)
        per_client[MEANS] = torch.stack([zeros if means is None else means for means, _, _ in prepared])
    lam, vw = hp.lambda_local, hp.virtual_weight

    def loss(t: dict[str, Tensor], x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        z = model_call(model.body, t, x, "body.")
        if hp.navigator:
            logits_fn = Navigator(t[ANCHORS], t[LOG_SCALE], hp.navigator_coords, hp.navigator_step).logits
        else:
            def logits_fn(q: Tensor) -> Tensor:
                return model_call(model.head, t, q, "head.")
        value = shared_objective(logits_fn, z, y, t[BANK_Z], t[BANK_Y], vw, weight=w)
        if use_local:
            value = value + lam * local_objective(z, y, t[MEANS], weight=w)
        return value

    trained, losses = train_together(loss, start, ClientRows.of_clients(datas), [c.generator for c in ctxs], algo.train,
                                     per_client=per_client, shared=shared)
    if hp.navigator:
        trained[ANCHORS] = anchors_from_coords(trained[ANCHORS], trained[LOG_SCALE], hp.navigator_coords,
                                              hp.navigator_step)
    updates = []
    for b, new, (_, state, metrics), d, value in zip(broadcasts, unstack(trained, len(ctxs)), prepared, datas, losses):
        weights = {**{k: b[k] for k in algo.model_keys}, **{k: new[k] for k in names}}
        algo.load(weights)
        stats = statistic_extractor(model, d.x_train, d.y_train, algo.num_classes).to("cpu")
        upload = {**weights, **stats.to_payload(STATS), **{k: new[k] for k in nav_keys}}
        updates.append(ClientUpdate(upload=upload, weight=float(d.num_train), state=state,
                                    metrics={**metrics, "train_loss": float(value)}))
    return updates
