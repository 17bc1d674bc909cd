"""FedMarket: simulation."""
