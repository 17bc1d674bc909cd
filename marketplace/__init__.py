"""FedMarket: marketplace."""
