"""The OpenAI wire: request/response/chunk Structs, errors, and the translation to and
from the internal types of `pipelines/`. Never touches a model."""
