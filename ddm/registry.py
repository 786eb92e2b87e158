"""One way to name the parts of ddm: a registry per kind of part, filled by one decorator.

    ORDERS = Registry("sampler order")

    @ORDERS.register("confidence")
    def confidence_scores(probs, token_p, generator): ...

    ORDERS.get("confidence")              # the registered object
    ORDERS.get("mypkg.orders:my_order")   # or any importable object, named by its path
    ORDERS.build("cap", eta=0.1, ...)     # a registered class, given the keywords it takes
    ORDERS.names()                        # what a config may name

Config fields name the registry they draw from (`ddm.config.registered`), so a value is
checked at load time and the error lists the registered names. A registry fills itself
from the module that defines it; parts that live in other packages (the tasks, a user's
plugin) are found through the registry's entry-point group, loaded on first use.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from importlib.metadata import entry_points
from typing import Any, Callable


class RegistryError(ValueError):
    """A name that no registry entry, plugin or import path provides."""


def import_object(path: str, where: str = "") -> Any:
    """The object named `package.module:attribute` (the working directory is importable too)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise RegistryError(f"{where or path}: {path!r} is not of the form package.module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # a user's own module beside the config, without packaging
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RegistryError(f"{where or path}: cannot import {module_name!r} ({e})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RegistryError(f"{where or path}: module {module_name!r} has no attribute {attr!r}") from None


class Registry:
    def __init__(self, kind: str, entry_points: str | None = None):
        self.kind = kind  # how errors name an entry, e.g. "sampler order"
        self.group = entry_points  # plugins from other packages: name = "module:object"
        self._items: dict[str, Any] = {}

    def register(self, *names: str, replace: bool = False) -> Callable[[Any], Any]:
        """Decorator: register the object under each of `names` (`replace`: a newer definition of
        the same name wins, as when a class is defined again)."""
        def add(obj: Any) -> Any:
            for name in names:
                if name in self._items and self._items[name] is not obj and not replace:
                    raise RegistryError(f"{self.kind} {name!r} is registered twice")
                self._items[name] = obj
            return obj
        return add

    def _plugins(self) -> dict[str, Any]:
        return {} if self.group is None else {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._plugins()))

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._plugins()

    def get(self, name: str, where: str = "") -> Any:
        """The entry `name`, a plugin of that name, or the object at the import path `name`."""
        if name in self._items:
            return self._items[name]
        plugin = self._plugins().get(name)
        if plugin is not None:
            obj = plugin.load()  # importing the module runs its decorators
            return self._items.setdefault(name, obj)
        if isinstance(name, str) and ":" in name:
            return import_object(name, where)
        raise RegistryError(f"{where + ': ' if where else ''}unknown {self.kind} {name!r}; registered: "
                            f"{', '.join(self.names()) or 'none'} (or name an object as package.module:attribute)")

    def build(self, name: str, where: str = "", **available: Any) -> Any:
        """Call entry `name` with the keywords of `available` that it accepts (its own `name` too)."""
        factory = self.get(name, where)
        params = inspect.signature(factory).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return factory(name=name, **available)
        kwargs = {k: v for k, v in {"name": name, **available}.items() if k in params}
        return factory(**kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
