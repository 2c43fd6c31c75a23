"""cnnlab: five classic CNNs on MNIST, the tested core of the course."""
from .models import count_parameters, get_model, list_models

__version__ = "0.1.0"
__all__ = ["count_parameters", "get_model", "list_models", "__version__"]
