"""The data contract, enforced by pandera and Great Expectations, with statistics against the training reference."""
