"""FastRecon (regression with distribution regularisation, closed form): torch_model holds the functional core."""
