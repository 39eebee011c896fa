"""pfedkit: personalized federated learning, simulated in-process or deployed on Flower."""

__version__ = "0.1.0"
