"""Interoperability: SBML export, PEtab problems, NONMEM-style data tables.

* :mod:`tregsim.interop.sbml` — ``export_sbml(model, path, doses=...)`` (SBML L3V2, libSBML);
* :mod:`tregsim.interop.roadrunner` — simulate the export in libRoadRunner (the independent
  check of tregsim's solver);
* :mod:`tregsim.interop.petab` — ``export_petab(model, data, out_dir)`` (PEtab v1);
* :mod:`tregsim.interop.nonmem` — ``read_nonmem`` / ``write_nonmem``, converters to
  :class:`tregsim.Doses` + covariates and to the long calibration format.

SBML, roadrunner and PEtab need the ``interop`` extra (``pip install tregsim[interop]``); the
NONMEM tables need only pandas. Submodules are imported on use, not here.
"""
