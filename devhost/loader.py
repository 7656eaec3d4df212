"""Import an app's function_app.py and index its functions the way the Python worker does."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func

from devhost.config import ConfigError

DEFAULT_SCRIPT_FILE = "function_app.py"


@dataclass(frozen=True)
class Binding:
    """One binding from function.json: type, direction, name and the rest of its properties."""

    name: str
    type: str
    direction: str
    properties: Mapping[str, Any]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Binding:
        """Build from a binding dict as `Function.get_function_json()` gives it."""
        return cls(
            name=str(raw.get("name", "")),
            type=str(raw.get("type", "")),
            direction=str(raw.get("direction", "in")).lower(),
            properties=dict(raw),
        )

    @property
    def is_trigger(self) -> bool:
        """Say whether this binding triggers the function (every trigger type ends in "Trigger")."""
        return self.type.lower().endswith("trigger")

    def get(self, key: str, default: Any = None) -> Any:
        """Read a binding property."""
        return self.properties.get(key, default)


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: its name, trigger, other bindings and the Python callable."""

    name: str
    trigger: Binding
    bindings: tuple[Binding, ...]
    user_function: Callable[..., Any]
    parameters: frozenset[str]
    takes_any_keyword: bool = False
    trigger_annotation: str | None = None

    @property
    def is_async(self) -> bool:
        """Say whether the worker would await the function (else it runs in the thread pool)."""
        return inspect.iscoroutinefunction(self.user_function)


@dataclass(frozen=True)
class LoadedApp:
    """The imported script module, its FunctionApp and the indexed functions."""

    app_dir: Path
    module: ModuleType
    app: func.FunctionRegister
    functions: tuple[FunctionSpec, ...]


def import_app_module(app_dir: Path, script_file: str = DEFAULT_SCRIPT_FILE) -> ModuleType:
    """Put DIR first on sys.path and import DIR/<script_file> afresh."""
    script = app_dir / script_file
    if not script.is_file():
        raise ConfigError(f"{script} does not exist: devhost needs the app's {script_file}")
    module_name = script.stem
    if sys.path[:1] != [str(app_dir)]:
        sys.path.insert(0, str(app_dir))
    # A fresh import each load: get_functions() may be called only once per app object, and in-process
    # tests load several sample apps that all name their script function_app.py.
    sys.modules.pop(module_name, None)
    importlib.invalidate_caches()
    module = importlib.import_module(module_name)
    loaded_from = Path(getattr(module, "__file__", "") or "").resolve()
    if loaded_from != script.resolve():
        raise ConfigError(f"importing {module_name!r} found {loaded_from}, not {script}: rename the clash")
    return module


def find_function_app(module: ModuleType) -> func.FunctionRegister:
    """Return the single module-level FunctionApp/FunctionRegister instance, as the worker requires."""
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if not apps:
        raise ConfigError(f"{module.__file__}: no module-level azure.functions.FunctionApp instance found")
    if len(apps) > 1:
        raise ConfigError(f"{module.__file__}: more than one FunctionApp instance; keep exactly one")
    return apps[0]


def index_function(function: func.Function) -> FunctionSpec:
    """Turn one SDK Function into a FunctionSpec from its function.json bindings."""
    name = function.get_function_name() or function.get_user_function().__name__
    raw = json.loads(function.get_function_json())
    bindings = [Binding.from_dict(item) for item in raw.get("bindings", [])]
    triggers = [binding for binding in bindings if binding.is_trigger]
    if len(triggers) != 1:
        raise ConfigError(f"function {name!r} must have exactly one trigger, found {len(triggers)}")
    user_function = function.get_user_function()
    parameters = _signature_parameters(user_function)
    return FunctionSpec(
        name=name,
        trigger=triggers[0],
        bindings=tuple(binding for binding in bindings if not binding.is_trigger),
        user_function=user_function,
        parameters=frozenset(parameter.name for parameter in parameters),
        takes_any_keyword=any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters),
        trigger_annotation=_annotation_name(parameters, triggers[0].name),
    )


def load_app(app_dir: Path, script_file: str = DEFAULT_SCRIPT_FILE) -> LoadedApp:
    """Import the app and index its functions (calls `get_functions()` exactly once)."""
    module = import_app_module(app_dir, script_file)
    app = find_function_app(module)
    functions = tuple(index_function(function) for function in app.get_functions())
    return LoadedApp(app_dir=app_dir, module=module, app=app, functions=functions)


def missing_parameters(spec: FunctionSpec) -> list[str]:
    """List binding names the Python function does not accept (the worker refuses such functions)."""
    if spec.takes_any_keyword:
        return []
    names = [spec.trigger.name, *(binding.name for binding in spec.bindings)]
    return [name for name in names if name != "$return" and name not in spec.parameters]


def _signature_parameters(function: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return []


def _annotation_name(parameters: list[inspect.Parameter], name: str) -> str | None:
    """Return "str" or "bytes" when the trigger parameter is annotated so (the worker passes the body)."""
    for parameter in parameters:
        if parameter.name == name:
            annotation = parameter.annotation
            text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
            return text if text in ("str", "bytes") else None
    return None
