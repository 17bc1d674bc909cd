"""FedMarket: agents."""
