"""Declarative models: parse (whitelisted), validate, compile to batched numpy kernels."""

from tregsim.model.compile import (
    CompiledModel,
    ParameterBatch,
    compile_model,
    list_models,
    load_model,
    resolve_model_path,
)
from tregsim.model.expr import Logistic, parse_expression
from tregsim.model.priors import Prior
from tregsim.model.spec import ModelSpec, load_spec, spec_from_dict

__all__ = [
    "CompiledModel",
    "Logistic",
    "ModelSpec",
    "ParameterBatch",
    "Prior",
    "compile_model",
    "list_models",
    "load_model",
    "load_spec",
    "parse_expression",
    "resolve_model_path",
    "spec_from_dict",
]
