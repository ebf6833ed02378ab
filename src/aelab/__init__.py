"""aelab: an autoencoder lab."""
