"""Virtual populations: covariates, inter-individual variability, eligibility.

See :mod:`tregsim.population.sampling` for how rejection sampling stays chunk-invariant.
"""

from tregsim.population.distributions import COVARIATE_UNITS, COVARIATES, CovariateModel
from tregsim.population.eligibility import Eligibility
from tregsim.population.sampling import Population, sample_population

__all__ = [
    "COVARIATES",
    "COVARIATE_UNITS",
    "CovariateModel",
    "Eligibility",
    "Population",
    "sample_population",
]
