"""JobCare recommender: domain core shared by every stage (config, contracts, world simulator, CLI)."""

__version__ = "0.1.0"
