"""Index writes of autocast results into float32 buffers, for ``--amp`` (rule TP432, kind ``amp_insert``).

Under ``torch.autocast`` a model's activations come out in float16/bfloat16. A trainer that keeps a
buffer created outside autocast (``self.feature_map['fusion'] = torch.zeros(n, d)``, float32) and
writes activations into it by index assignment (``self.feature_map['fusion'][indexes] = f_fusion``)
then fails: index assignment requires the source and destination dtypes to match (Self-MM). So after
the insertion pass has chosen its autocast regions, this module follows the values computed there:

* *tainted* names: assigned inside a region from a call (``outputs = model(x)``), then any name
  assigned from a chain on a tainted one (``f = outputs['f'].detach()``; ``.item()``/``.tolist()``
  end the chain: a Python number), and the parameters of a function of the same class (``self.m``)
  or module that receives a tainted argument (one call level);
* an index write ``buffer[index] = value`` whose value is a tainted name (or a chain on one) and whose
  buffer is known to be a tensor (a torch factory call, possibly followed by ``.to(...)``-like
  methods, assigned to that name or ``self.`` attribute, or a dict literal of such calls) gets
  ``value.to(buffer.dtype)`` (a change row); one whose buffer cannot be known is a row in
  unsupported_api.csv with the cast to add by hand.

Nothing here imports torch.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import libcst as cst

from transplant.results import Operation
from transplant.rewrite import amp_common as c

# torch functions that return a new tensor (the buffer's dtype is the default float unless given).
_FACTORIES = frozenset(f"torch.{n}" for n in (
    "zeros", "ones", "empty", "full", "rand", "randn", "randint", "arange", "linspace", "tensor", "as_tensor",
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "stack", "cat", "eye",
))
# Tensor methods that return a tensor again (a factory call followed by these is still a tensor).
_TENSOR_METHODS = frozenset(("to", "float", "double", "half", "bfloat16", "cuda", "npu", "cpu", "clone", "detach",
                             "requires_grad_", "contiguous", "view", "reshape", "t", "squeeze", "unsqueeze"))
# Methods and attributes whose result is a Python value (or no tensor): they end a taint chain.
_TO_PYTHON = frozenset(("item", "tolist", "numpy", "__len__", "size", "dim", "numel", "nelement", "element_size",
                        "data_ptr", "get_device", "is_contiguous", "type"))
_PYTHON_ATTRIBUTES = frozenset(("shape", "dtype", "device", "ndim", "is_cuda", "is_npu", "requires_grad", "grad_fn",
                                "layout", "names"))
_BUILTINS = frozenset(("len", "int", "float", "str", "bool", "list", "dict", "tuple", "set", "range", "sum",
                       "max", "min", "abs", "round", "isinstance", "print", "type", "id", "repr", "sorted"))


def cast_index_writes(analysis: c.Analysis, ctx, regions: Sequence[tuple[cst.BaseStatement, cst.BaseStatement]],
                      rule) -> None:
    """Cast index writes of values computed under autocast (``regions``: first..last statements)."""
    if rule is None:
        return
    module = analysis.module
    done: set[int] = set()
    for first, last in regions:
        suite = analysis.parent(first)
        body = list(getattr(suite, "body", ()))
        if first not in body or last not in body:
            continue
        start, end = body.index(first), body.index(last)
        tainted = _assigned_from_calls(body[start:end + 1])
        function = analysis.scope_of(first)
        writes = _Writes(tainted)
        for stmt in body[start:]:
            stmt.visit(writes)
        for write in writes.found:
            _cast(analysis, ctx, rule, write, function, done)
        klass = analysis.class_of(function) if isinstance(function, cst.FunctionDef) else None
        for callee, params in _calls_with_tainted_args(writes, body[end + 1:], klass, module):
            inner = _Writes(set(params))
            callee.body.visit(inner)
            for write in inner.found:
                _cast(analysis, ctx, rule, write, callee, done)


def _assigned_from_calls(statements: Iterable[cst.BaseStatement]) -> set[str]:
    """Names assigned from a call (not a Python-valued builtin) anywhere in ``statements``."""
    names: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            if isinstance(node.value, cst.Call) and not _python_valued(node.value):
                for target in node.targets:
                    if isinstance(target.target, cst.Name):
                        names.add(target.target.value)

    for stmt in statements:
        stmt.visit(Visitor())
    return names


def _python_valued(call_node: cst.Call) -> bool:
    func = call_node.func
    if isinstance(func, cst.Name):
        return func.value in _BUILTINS
    return isinstance(func, cst.Attribute) and func.attr.value in _TO_PYTHON


def _chain_root(node: cst.BaseExpression) -> Optional[str]:
    """The root name of ``a``, ``a.b``, ``a['k']``, ``a.b(...)`` chains that stay tensors, else None."""
    while True:
        if isinstance(node, cst.Name):
            return node.value
        if isinstance(node, cst.Attribute):
            if node.attr.value in _PYTHON_ATTRIBUTES:
                return None
            node = node.value
        elif isinstance(node, cst.Subscript):
            node = node.value
        elif isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and not _python_valued(node):
            node = node.func.value
        else:
            return None


def _is_tainted(node: cst.BaseExpression, tainted: set[str]) -> bool:
    """Whether ``node`` is a tensor computed from tainted values (a chain on one, or arithmetic with one)."""
    if isinstance(node, cst.BinaryOperation):
        return _is_tainted(node.left, tainted) or _is_tainted(node.right, tainted)
    if isinstance(node, cst.UnaryOperation):
        return not isinstance(node.operator, cst.Not) and _is_tainted(node.expression, tainted)
    root = _chain_root(node)
    return root is not None and root in tainted


class _Writes(cst.CSTVisitor):
    """Follows the taint through assignments in order; collects index writes of tainted values."""

    def __init__(self, tainted: set[str]) -> None:
        self.tainted = set(tainted)
        self.found: list[cst.Assign] = []
        self.calls: list[cst.Call] = []

    def visit_Assign(self, node: cst.Assign) -> None:
        value_tainted = _is_tainted(node.value, self.tainted)
        for target in node.targets:
            if isinstance(target.target, cst.Subscript) and value_tainted:
                self.found.append(node)
            elif isinstance(target.target, cst.Name):
                if value_tainted:
                    self.tainted.add(target.target.value)
                elif target.target.value in self.tainted and not isinstance(node.value, cst.Call):
                    self.tainted.discard(target.target.value)  # rebound to something else

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False  # a nested function is another scope


def _calls_with_tainted_args(writes: _Writes, following: Sequence[cst.BaseStatement], klass: Optional[cst.ClassDef],
                             module: cst.Module) -> list[tuple[cst.FunctionDef, list[str]]]:
    """(callee FunctionDef, its parameters receiving tainted values) for ``self.m(...)`` / ``m(...)`` calls."""
    within = {id(n) for stmt in following for n in _walk(stmt)}
    out: list[tuple[cst.FunctionDef, list[str]]] = []
    seen: set[int] = set()
    for call_node in writes.calls:
        if id(call_node) not in within:
            continue
        func = call_node.func
        callee: Optional[cst.FunctionDef] = None
        offset = 0
        if (klass is not None and isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)
                and func.value.value == "self"):
            callee = _method(klass, func.attr.value)
            offset = 1
        elif isinstance(func, cst.Name):
            callee = _function(module, func.value)
        if callee is None or id(callee) in seen:
            continue
        params = [p.name.value for p in callee.params.params][offset:]
        tainted: list[str] = []
        for i, arg in enumerate(call_node.args):
            if arg.star or not _is_tainted(arg.value, writes.tainted):
                continue
            if arg.keyword is not None:
                tainted.append(arg.keyword.value)
            elif i < len(params):
                tainted.append(params[i])
        if tainted:
            seen.add(id(callee))
            out.append((callee, tainted))
    return out


def _walk(node: cst.CSTNode) -> Iterable[cst.CSTNode]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(n.children)


def _method(klass: cst.ClassDef, name: str) -> Optional[cst.FunctionDef]:
    for stmt in klass.body.body:
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name:
            return stmt
    return None


def _function(module: cst.Module, name: str) -> Optional[cst.FunctionDef]:
    for stmt in module.body:
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name:
            return stmt
    return None


def _cast(analysis: c.Analysis, ctx, rule, write: cst.Assign, function: cst.CSTNode, done: set[int]) -> None:
    if id(write) in done or len(write.targets) != 1:
        return
    done.add(id(write))
    target = write.targets[0].target
    assert isinstance(target, cst.Subscript)
    buffer = target.value
    module = analysis.module
    value_code = module.code_for_node(write.value)
    buffer_code = module.code_for_node(buffer)
    known = c.is_simple_reference(buffer) or _is_pure_chain(buffer)
    if not (known and _is_tensor_buffer(analysis, ctx, buffer, function)):
        if _is_container(analysis, buffer, function):
            return  # a dict/list of results (``losses[m] = ...``): no dtype to match
        ctx.record_unsupported(write, rule, f"{module.code_for_node(target)} = {value_code}",
                               f"the value comes from the autocast region (float16/bfloat16); if "
                               f"{buffer_code} is a float32 tensor, write `{value_code}.to({buffer_code}.dtype)` "
                               "(index assignment requires equal dtypes)")
        return
    dtype = cst.parse_expression(f"({buffer_code}).dtype" if not _is_pure_chain(buffer) else f"{buffer_code}.dtype")

    atom = isinstance(write.value, (cst.Name, cst.Attribute, cst.Subscript, cst.Call)) and not write.value.lpar

    def edit(updated: cst.CSTNode, _dtype=dtype, _atom=atom) -> cst.CSTNode:
        value = updated if _atom else c.parenthesize(updated)  # type: ignore[arg-type]
        return c.method_call(value, "to", _dtype)  # type: ignore[arg-type]

    ctx.replace(write.value, edit)
    after = f"{value_code if atom else '(' + value_code + ')'}.to({buffer_code}.dtype)"
    ctx.record_change(write.value, rule, rule.message, before=value_code, after=after, operation=Operation.MODIFY)


def _is_pure_chain(node: cst.BaseExpression) -> bool:
    """``self.a['k']``, ``buf``, ``self.maps[mode]``: names, attributes and simple subscripts only."""
    while True:
        if isinstance(node, cst.Name):
            return True
        if isinstance(node, cst.Attribute):
            node = node.value
        elif isinstance(node, cst.Subscript):
            if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
                return False
            key = node.slice[0].slice.value
            if not isinstance(key, (cst.Name, cst.SimpleString, cst.Integer)):
                return False
            node = node.value
        else:
            return False


def _is_tensor_expr(ctx, node: cst.BaseExpression) -> bool:
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _TENSOR_METHODS:
        node = node.func.value
    return isinstance(node, cst.Call) and ctx.qualified_name(node.func) in _FACTORIES


def _assignments(scope: cst.CSTNode, target_code: str, module: cst.Module) -> list[cst.BaseExpression]:
    values: list[cst.BaseExpression] = []

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            for t in node.targets:
                if module.code_for_node(t.target) == target_code:
                    values.append(node.value)

    scope.visit(Visitor())
    return values


def _binding_values(analysis: c.Analysis, buffer: cst.BaseExpression, function: cst.CSTNode
                    ) -> tuple[list[cst.BaseExpression], Optional[cst.BaseExpression]]:
    """Values assigned to the buffer's holder, and the subscript key when the holder is a dict."""
    module = analysis.module
    key = None
    holder = buffer
    if isinstance(buffer, cst.Subscript):
        holder = buffer.value
        key = buffer.slice[0].slice.value if isinstance(buffer.slice[0].slice, cst.Index) else None
    code = module.code_for_node(holder)
    if code.startswith("self."):
        klass = analysis.class_of(function) if isinstance(function, cst.FunctionDef) else None
        return (_assignments(klass, code, module) if klass is not None else []), key
    if isinstance(holder, cst.Name):
        return _assignments(function, code, module), key
    return [], key


def _is_tensor_buffer(analysis: c.Analysis, ctx, buffer: cst.BaseExpression, function: cst.CSTNode) -> bool:
    values, key = _binding_values(analysis, buffer, function)
    if not values:
        return False
    for value in values:
        if key is None or not isinstance(buffer, cst.Subscript):
            if not _is_tensor_expr(ctx, value):
                return False
        elif isinstance(value, cst.Dict):
            if not value.elements or not all(isinstance(e, cst.DictElement) and _is_tensor_expr(ctx, e.value)
                                             for e in value.elements):
                return False
        elif not _is_tensor_expr(ctx, value):
            return False  # holder = torch.zeros(...): buffer is holder[key], a tensor too
    return True


def _is_container(analysis: c.Analysis, buffer: cst.BaseExpression, function: cst.CSTNode) -> bool:
    """Whether ``buffer`` (a name or attribute) is only ever bound to a dict/list/set/tuple."""
    if not isinstance(buffer, (cst.Name, cst.Attribute)):
        return False
    values = _binding_values(analysis, buffer, function)[0]
    return bool(values) and all(isinstance(v, (cst.Dict, cst.List, cst.DictComp, cst.ListComp, cst.Tuple, cst.Set))
                                or (isinstance(v, cst.Call) and isinstance(v.func, cst.Name)
                                    and v.func.value in ("dict", "list", "defaultdict", "OrderedDict"))
                                for v in values)
