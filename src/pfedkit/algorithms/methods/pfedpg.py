"""pFedPG (Yang, Wang, Wang, "Efficient Model Personalization in Federated Learning via
Client-Specific Prompt Generation", ICCV 2023): a server-side prompt generator maps a learnable
descriptor of each client to that client's prompt; clients tune the prompt (and a local head) on
a frozen ViT and the server learns the generator and descriptors from the tuned prompts.

Our reading where we lack the paper's details: the generator is a two-layer MLP with a low-rank
output (descriptor (m,) -> prompt (L, D)); the server fits generator and descriptors by
``server_steps`` Adam steps on the mean squared distance between G(d_k) and the prompts the
clients returned this round (the paper back-propagates the clients' prompt updates through G,
which this regression does to first order); descriptors start from a seeded N(0, 1) draw per
client, so the server can create them lazily without knowing the number of clients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.prompting import PromptedOnly
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload, clone_payload
from pfedkit.core.seeding import built_with_seed, derive_seed, torch_generator
from pfedkit.data.client_data import ClientData
from pfedkit.models.prompted import PromptedClassifier

GEN = "pg.gen."  # server: the generator's state_dict
DESC = "pg.desc."  # server: "pg.desc.<client id>", (m,) descriptor of a client the server has updated
PROMPT = "pg.prompt"  # down: the client's generated prompt; up: the tuned prompt (shape of the body tokens)
_DESC_TAG = 0xDE5C


@dataclass
class PFedPGHParams:
    descriptor_dim: int = param(32, lo=1, hi=4096, doc="m, size of a client descriptor")
    hidden: int = param(128, lo=1, hi=65536, doc="generator hidden width")
    rank: int = param(16, lo=1, hi=4096, doc="low-rank bottleneck before the (L*D) output")
    server_steps: int = param(20, lo=0, hi=100_000, doc="Adam steps of the server's generator fit per round")
    server_lr: float = param(1e-2, lo=0.0, hi=10.0, lo_open=True, doc="the server's Adam learning rate")


class PromptGenerator(nn.Module):
    """(K, m) descriptors -> (K, *prompt_shape) prompts; the output layer starts at zero, so every
    client starts from the shared ``base`` prompt."""

    def __init__(self, descriptor_dim: int, hidden: int, rank: int, prompt_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.prompt_shape = prompt_shape
        out = int(torch.tensor(prompt_shape).prod())
        self.net = nn.Sequential(nn.Linear(descriptor_dim, hidden), nn.GELU(), nn.Linear(hidden, rank, bias=False),
                                 nn.Linear(rank, out))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.base = nn.Parameter(torch.randn(prompt_shape) * 0.02)

    def forward(self, descriptors: Tensor) -> Tensor:
        return self.base + self.net(descriptors).view(-1, *self.prompt_shape)


@register_algorithm
class PFedPG(PromptedOnly, Algorithm[PFedPGHParams]):
    """pFedPG; see the module docstring. Client k receives only its prompt ``pg.prompt``
    (L, D) (or (depth, L, D) with deep prompts), trains prompt and local head for
    ``train.local_epochs`` on cross-entropy and uploads the tuned prompt."""

    name = "pfedpg"
    key_prefix = "pg."
    shares = "up: the client's tuned prompt; down: its generated prompt (generator and descriptors stay on the server)"
    keeps = "head"
    paper = ("Yang et al., Efficient Model Personalization in Federated Learning via Client-Specific Prompt "
             "Generation, ICCV 2023")

    def setup(self) -> None:
        super().setup()  # PromptedOnly refused any model without prompt tokens
        model = self.model
        assert isinstance(model, PromptedClassifier)
        shape = tuple(model.body.tokens.shape)
        self.generator = built_with_seed(derive_seed(self.seed, 0x9F6), lambda: PromptGenerator(
            self.hp.descriptor_dim, self.hp.hidden, self.hp.rank, shape))
        self.head_keys = self.keys("head")
        self._initial_head = self.snapshot(self.head_keys)

    # ----- server -------------------------------------------------------------------------
    def init_server(self) -> Payload:
        return {GEN + k: v.detach().clone() for k, v in self.generator.state_dict().items()}

    def descriptor(self, server: Payload, client_id: int) -> Tensor:
        """The client's descriptor (m,): the server's, else its seeded initial draw."""
        key = f"{DESC}{client_id}"
        if key in server:
            return server[key]
        return torch.randn(self.hp.descriptor_dim, generator=torch_generator(self.seed, client_id, _DESC_TAG))

    def for_client(self, broadcast: Payload, client_id: int) -> Payload:
        """Only this client's generated prompt."""
        self._load_generator(broadcast)
        with torch.no_grad():
            prompt = self.generator(self.descriptor(broadcast, client_id)[None].to(self._device()))[0]
        return {PROMPT: prompt}

    def aggregate(self, server: Payload, updates: list[ClientUpdate], round: int) -> Payload:
        ups = [u for u in updates if PROMPT in u.upload]
        if not ups:
            return server
        self._load_generator(server)
        device = self._device()
        desc = nn.Parameter(torch.stack([self.descriptor(server, u.client_id) for u in ups]).to(device))
        targets = torch.stack([u.upload[PROMPT] for u in ups]).to(device)
        opt = torch.optim.Adam([*self.generator.parameters(), desc], lr=self.hp.server_lr)
        with torch.enable_grad():
            for _ in range(self.hp.server_steps):
                opt.zero_grad(set_to_none=True)
                loss = (self.generator(desc) - targets).pow(2).mean()
                loss.backward()
                opt.step()
        out = dict(server)
        out.update({GEN + k: v.detach().cpu().clone() for k, v in self.generator.state_dict().items()})
        for u, d in zip(ups, desc.detach().cpu()):
            out[f"{DESC}{u.client_id}"] = d.clone()
        return out

    # ----- client -------------------------------------------------------------------------
    def init_client(self, data: ClientData) -> Payload:
        return clone_payload(self._initial_head)

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self._load_personal(broadcast, state)
        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator)
        tuned = self.model.body.tokens.detach().clone()
        return ClientUpdate(upload={PROMPT: tuned}, weight=data.num_train, state=self.snapshot(self.head_keys),
                            metrics={"train_loss": loss})

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self._load_personal(broadcast, state)
        self.model.eval()
        return self.model

    def _load_personal(self, broadcast: Payload, state: Payload) -> None:
        with torch.no_grad():
            self.model.body.tokens.copy_(broadcast[PROMPT])
        self.load(state)

    def _load_generator(self, server: Payload) -> None:
        self.generator.to(self._device())
        self.generator.load_state_dict({k[len(GEN):]: v for k, v in server.items() if k.startswith(GEN)})

    def _device(self) -> torch.device:
        return self.model.head.weight.device

