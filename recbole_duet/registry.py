"""Finding RecBole's models by name, without importing the optional libraries some of them need.

``recbole.utils.get_model`` asks each of RecBole's model packages in turn whether it holds the name, and asking
``exlib_recommender`` imports that package, which imports LightGBM *and* XGBoost: any name RecBole does not know
(a typo included) ends in "No module named 'lightgbm'". Here the model files are listed from disk instead, so an
unknown name, a name in the wrong case and a model whose library is missing each get an error that says so.
"""

import importlib
import importlib.util
import os
import pkgutil

from recbole.utils import ModelType

from recbole_duet.errors import ConfigError, MissingDependencyError

# RecBole's model packages, in the order get_model searches them, with the task of their models.
MODEL_PACKAGES = {
    "general_recommender": ModelType.GENERAL,
    "context_aware_recommender": ModelType.CONTEXT,
    "sequential_recommender": ModelType.SEQUENTIAL,
    "knowledge_aware_recommender": ModelType.KNOWLEDGE,
    "exlib_recommender": ModelType.DECISIONTREE,
}
# Libraries a model imports that RecBole does not install, by model file: exlib_recommender/__init__.py imports
# both LightGBM and XGBoost, so each of its models needs both; NCL clusters with faiss.
OPTIONAL_LIBRARIES = {"lightgbm": ("lightgbm", "xgboost"), "xgboost": ("lightgbm", "xgboost"), "ncl": ("faiss",)}
PIP_NAMES = {"faiss": "faiss-cpu"}


def _model_package_dir(package):
    return os.path.join(os.path.dirname(importlib.util.find_spec("recbole.model").origin), package)


def model_files(package):
    """Module names (lower-case model names) of one of RecBole's model packages, read from disk, not imported."""
    return sorted(info.name for info in pkgutil.iter_modules([_model_package_dir(package)]))


def _package_of(module_name):
    for package in MODEL_PACKAGES:
        if module_name in model_files(package):
            return package
    return None


def model_class_in(package, module_name):
    """The model class defined in ``recbole.model.<package>.<module_name>`` (its name, lower-cased, is the
    module's), e.g. ``LightGCN`` in ``general_recommender.lightgcn``."""
    module = importlib.import_module(f"recbole.model.{package}.{module_name}")
    classes = (value for name, value in vars(module).items() if isinstance(value, type) and name.lower() == module_name)
    return next(classes)


def recbole_models(model_type):
    """Classes of every RecBole model of one task (``ModelType.GENERAL``, ``SEQUENTIAL``, ...)."""
    return [
        model_class_in(package, module_name)
        for package, package_type in MODEL_PACKAGES.items()
        if package_type == model_type
        for module_name in model_files(package)
    ]


def get_model(name):
    """RecBole's model class called ``name``.

    Raises:
        ConfigError: no RecBole model has that name, or it is spelt in another case (RecBole matches the case).
        MissingDependencyError: the model needs a library that is not installed (LightGBM, XGBoost, faiss).
    """
    package = _package_of(name.lower())
    if package is None:
        raise ConfigError(
            "model",
            name,
            "DUET, Finetune or a RecBole model name such as SASRec, BPR or DeepFM (https://recbole.io/model_list.html)",
        )
    missing = [lib for lib in OPTIONAL_LIBRARIES.get(name.lower(), ()) if importlib.util.find_spec(lib) is None]
    if missing:
        raise MissingDependencyError(
            f"Model '{name}' needs {missing}, which RecBole does not install: "
            f"pip install {' '.join(PIP_NAMES.get(library, library) for library in missing)}"
        )
    model_class = model_class_in(package, name.lower())
    if model_class.__name__ != name:
        raise ConfigError("model", name, f"'{model_class.__name__}' (model names are case-sensitive)")
    return model_class
