"""The physics of serving: what a deployment costs, and how a provider turns cost into a price."""
