"""Generated code for ``package v1beta1`` (``make proto``) and the API's constants."""
