"""A mypy plugin for actorlib: the typing that annotations alone cannot express.

Enable it in the mypy configuration of the code that uses actorlib::

    [tool.mypy]
    plugins = ["actorlib.mypy"]

Without it, actorlib is still typed by its annotations (``ObjectRef[T]``,
``RemoteFunction[P, R]``, ``get``/``wait`` overloads); the plugin adds four things:

- ``.remote()`` arguments (tasks, actor methods, actor constructors) accept an
  ``ObjectRef[T]`` wherever the function takes a ``T``, as the runtime does for top-level
  arguments. A ``ParamSpec`` cannot say "T or ObjectRef[T]" per parameter, so without the
  plugin the check is strict: a ref passed for an ``int`` is reported.
- ``@actorlib.remote`` on a class: mypy ignores what class decorators return, so it would
  report ``"type[Counter]" has no attribute "remote"``. The plugin gives the class
  ``remote(...) -> ActorHandle[Counter]`` (checked against ``__init__``) and
  ``options(...) -> ActorClass[Counter]``, and reports ``Counter(...)`` (which raises at
  run time).
- ``ActorHandle[Counter]`` attributes: ``handle.incr`` is ``ActorMethod[[by: int], int]``
  (``async def`` methods give their awaited result), so ``handle.incr.remote(1)`` is an
  ``ObjectRef[int]``; a method the class does not have is reported.
- ``ActorClass[Counter].remote(...)`` is checked against ``Counter.__init__``.

This module is imported by mypy only, never by actorlib at run time.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy import errorcodes
from mypy.expandtype import expand_type_by_instance
from mypy.maptype import map_instance_to_supertype
from mypy.nodes import (
    ARG_STAR,
    ARG_STAR2,
    Argument,
    CallExpr,
    Decorator,
    Expression,
    FuncDef,
    RefExpr,
    TypeInfo,
    Var,
)
from mypy.plugin import (
    AttributeContext,
    ClassDefContext,
    FunctionContext,
    MethodSigContext,
    Plugin,
)
from mypy.plugins.common import add_method_to_class
from mypy.typeops import bind_self
from mypy.types import (
    AnyType,
    CallableType,
    Instance,
    Parameters,
    ParamSpecType,
    ProperType,
    Type,
    TypeOfAny,
    TypeType,
    TypeVarTupleType,
    UnionType,
    UnpackType,
    get_proper_type,
)
from mypy.typevars import fill_typevars_with_any

OBJECT_REF = "actorlib.core.refs.ObjectRef"
ACTOR_CLASS = "actorlib.actor.ActorClass"
ACTOR_HANDLE = "actorlib.actor.ActorHandle"
ACTOR_METHOD = "actorlib.actor.ActorMethod"
REMOTE_DECORATORS = frozenset({"actorlib.api.remote", "actorlib.remote"})
WIDENED_METHODS = frozenset({
    "actorlib.remote_function.RemoteFunction.remote",
    "actorlib.actor.ActorMethod.remote",
})
ACTOR_CLASS_REMOTE = "actorlib.actor.ActorClass.remote"
HANDLE_ATTRIBUTE = "actorlib.actor.ActorHandle."
METADATA_KEY = "actorlib"
METHOD_DECORATORS = frozenset({"actorlib.actor.method", "actorlib.method"})


def widen(sig: CallableType, ref_of: Callable[[Type], Type | None]) -> CallableType:
    """``sig`` with each parameter type ``T`` made ``T | ObjectRef[T]``.

    Parameters typed ``Any``, ``*args: P.args`` / ``**kwargs: P.kwargs`` and unpacked
    TypeVarTuples are left as they are.
    """
    arg_types: list[Type] = []
    for arg_type in sig.arg_types:
        proper = get_proper_type(arg_type)
        ref = None
        if not isinstance(
            proper, (AnyType, ParamSpecType, UnpackType, TypeVarTupleType, Parameters)
        ):
            ref = ref_of(arg_type)
        arg_types.append(arg_type if ref is None else UnionType.make_union([arg_type, ref]))
    return sig.copy_modified(arg_types=arg_types)


def _without_first(sig: CallableType) -> CallableType:
    return sig.copy_modified(
        arg_types=sig.arg_types[1:], arg_kinds=sig.arg_kinds[1:], arg_names=sig.arg_names[1:]
    )


def _awaited(ret: Type) -> Type:
    """The result an ``async def`` method's caller gets: ``Coroutine[.., .., X]`` -> ``X``."""
    proper = get_proper_type(ret)
    if isinstance(proper, Instance) and proper.type.fullname == "typing.Coroutine":
        return proper.args[2]
    return ret


def _init_signature(actor: Instance, fallback: Instance) -> CallableType | None:
    """The ``__init__`` of ``actor``'s class without ``self``, with ``actor``'s type arguments;
    None when it is not annotated or is not one signature (overloads, decorators)."""
    init = actor.type.get_method("__init__")
    if init is None or init.info.fullname == "builtins.object":
        return CallableType([], [], [], AnyType(TypeOfAny.special_form), fallback)
    sig = get_proper_type(init.type) if isinstance(init, FuncDef) else None
    if not isinstance(sig, CallableType) or sig.variables or not sig.arg_types:
        return None
    sig = expand_type_by_instance(sig, map_instance_to_supertype(actor, init.info))
    return _without_first(sig)


class ActorlibPlugin(Plugin):
    """See the module docstring."""

    # -- semantic analysis: @remote on a class -------------------------------------------

    def get_class_decorator_hook_2(
        self, fullname: str
    ) -> Callable[[ClassDefContext], bool] | None:
        return _decorate_actor_class if fullname in REMOTE_DECORATORS else None

    # -- type checking ---------------------------------------------------------------------

    def get_method_signature_hook(
        self, fullname: str
    ) -> Callable[[MethodSigContext], CallableType] | None:
        if fullname in WIDENED_METHODS:
            return lambda ctx: widen(ctx.default_signature, self._ref_of)
        if fullname == ACTOR_CLASS_REMOTE:
            return lambda ctx: _actor_class_remote(ctx, self._ref_of)
        return None

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        if fullname.startswith(HANDLE_ATTRIBUTE):
            name = fullname[len(HANDLE_ATTRIBUTE):]
            return lambda ctx: _handle_attribute(ctx, name, self._instance)
        return None

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        sym = self.lookup_fully_qualified(fullname)
        node = sym.node if sym is not None else None
        if isinstance(node, TypeInfo) and node.metadata.get(METADATA_KEY, {}).get("actor"):
            return _instantiated_actor_class
        return None

    def _instance(self, fullname: str, args: list[Type]) -> Instance:
        """``fullname[args]``. (The checker's ``named_generic_type`` finds only names that
        modules re-export, and ``actorlib`` does not bind ``actorlib.core``.)"""
        sym = self.lookup_fully_qualified(fullname)
        assert sym is not None and isinstance(sym.node, TypeInfo), fullname
        return Instance(sym.node, args)

    def _ref_of(self, typ: Type) -> Type:
        return self._instance(OBJECT_REF, [typ])


def _decorate_actor_class(ctx: ClassDefContext) -> bool:
    """Give an ``@remote`` class its ActorClass face: ``remote`` and ``options``."""
    info = ctx.cls.info
    filled = fill_typevars_with_any(info)  # a generic actor class: its handle is C[Any]
    actor = filled if isinstance(filled, Instance) else filled.partial_fallback
    handle = ctx.api.named_type_or_none(ACTOR_HANDLE, [actor])
    actor_class = ctx.api.named_type_or_none(ACTOR_CLASS, [actor])
    if handle is None or actor_class is None:  # actorlib.actor not analysed (yet)
        return True
    info.metadata.setdefault(METADATA_KEY, {})["actor"] = True
    anything = AnyType(TypeOfAny.special_form)
    init = _init_signature(actor, ctx.api.named_type("builtins.function"))
    if init is None:
        args = [
            Argument(Var("args", anything), anything, None, kind)
            for kind in (ARG_STAR, ARG_STAR2)
        ]
    else:
        init = widen(init, lambda t: ctx.api.named_type_or_none(OBJECT_REF, [t]))
        args = [
            Argument(Var(name or f"__arg{i}", typ), typ, None, kind)
            for i, (name, typ, kind) in enumerate(
                zip(init.arg_names, init.arg_types, init.arg_kinds, strict=True)
            )
        ]
    for name, method_args, ret in (
        ("remote", args, handle),
        ("options", [Argument(Var("options", anything), anything, None, ARG_STAR2)],
         actor_class),
    ):
        existing = info.names.get(name)
        if existing is None or existing.plugin_generated:
            add_method_to_class(ctx.api, ctx.cls, name, method_args, ret, is_classmethod=True)
    return True


def _instantiated_actor_class(ctx: FunctionContext) -> Type:
    ret = get_proper_type(ctx.default_return_type)
    name = ret.type.name if isinstance(ret, Instance) else "the class"
    ctx.api.fail(
        f'Actor class "{name}" cannot be instantiated directly; use {name}.remote(...)',
        ctx.context,
    )
    return ctx.default_return_type


def _actor_class_remote(
    ctx: MethodSigContext, ref_of: Callable[[Type], Type | None]
) -> CallableType:
    owner = ctx.type
    if not isinstance(owner, Instance) or not owner.args:
        return ctx.default_signature
    actor = get_proper_type(owner.args[0])
    if not isinstance(actor, Instance):
        return ctx.default_signature
    init = _init_signature(actor, ctx.default_signature.fallback)
    if init is None:
        return ctx.default_signature
    return widen(init, ref_of).copy_modified(
        ret_type=ctx.default_signature.ret_type,
        fallback=ctx.default_signature.fallback,
        name=ctx.default_signature.name,
    )


def _method_type(actor: Instance, name: str) -> ProperType | None:
    """The type of ``actor``'s method ``name`` as called on an instance; None if absent."""
    sym = actor.type.get(name)
    if sym is None or sym.node is None:
        return None
    node = sym.node
    typ: ProperType | None
    if isinstance(node, Decorator):
        func: FuncDef = node.func
        if node.var.type is not None:  # the decorated type, once mypy has worked it out
            typ = get_proper_type(node.var.type)
        elif all(_is_method_options(d) for d in node.decorators):
            typ = get_proper_type(func.type)  # @actorlib.method(...) returns the function
        else:
            return AnyType(TypeOfAny.special_form)
    elif isinstance(node, FuncDef):
        func = node
        typ = get_proper_type(node.type)
    else:  # overloads, attributes: typed as "some callable"
        return AnyType(TypeOfAny.special_form)
    if not isinstance(typ, CallableType):
        return AnyType(TypeOfAny.special_form)
    if func.info is not None:  # the class's type variables, also through generic bases
        typ = expand_type_by_instance(typ, map_instance_to_supertype(actor, func.info))
    if func.is_static:
        return typ
    if func.is_class:
        return bind_self(typ, TypeType(actor), is_classmethod=True)
    return bind_self(typ, actor)


def _is_method_options(decorator: Expression) -> bool:
    """``@actorlib.method(...)``, which returns the method unchanged."""
    return (
        isinstance(decorator, CallExpr)
        and isinstance(decorator.callee, RefExpr)
        and decorator.callee.fullname in METHOD_DECORATORS
    )


def _handle_attribute(
    ctx: AttributeContext, name: str, instance: Callable[[str, list[Type]], Instance]
) -> Type:
    handle = ctx.type
    if not isinstance(handle, Instance) or not handle.args:
        return ctx.default_attr_type
    actor = get_proper_type(handle.args[0])
    if not isinstance(actor, Instance):  # ActorHandle[Any], from get_actor() and the like
        return ctx.default_attr_type
    method = _method_type(actor, name)
    if method is None or (name.startswith("__") and name.endswith("__")):
        ctx.api.fail(
            f'Actor "{actor.type.name}" has no method "{name}"', ctx.context,
            code=errorcodes.ATTR_DEFINED,
        )
        return AnyType(TypeOfAny.from_error)
    if not isinstance(method, CallableType) or method.variables:
        return ctx.default_attr_type
    params = Parameters(method.arg_types, method.arg_kinds, method.arg_names)
    return instance(ACTOR_METHOD, [params, _awaited(method.ret_type)])


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point for ``plugins = ["actorlib.mypy"]``."""
    return ActorlibPlugin
