"""Hand-written SQL for the few rows every request reads and writes: its session and its
flow instance.

Why: building a query through the ORM (clone, filters, compiler) costs far more than
running it. Measured on this project's machine, ``Session.objects.get(...)`` took about
565 us of CPU and the same SELECT through a cursor about 72 us; a sign-in reads its
session and its flow row on nearly all of its nine requests. The statements here are
plain single-table SELECT, UPDATE and DELETE by primary key, the same ones the ORM
issued, and they go through Django's connection (its transactions, its query log,
``CaptureQueriesContext``, the test database).

Values cross the boundary the way the ORM's compiler converts them, so these functions
answer what the ORM would: each column read goes through its field's converters
(``connection.ops.get_db_converters`` and the field's ``from_db_value``: a JSONField
decoded, a SQLite datetime made aware), and each value written through the field's
``get_db_prep_save``. Table and column names are quoted by the backend. Only field
values are ever parameters, never SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connections, models, router

Converter = Callable[[Any, Any, Any], Any]
M = TypeVar("M", bound=models.Model)


def _connection(model: type[models.Model], *, write: bool) -> Any:
    alias = router.db_for_write(model) if write else router.db_for_read(model)
    return connections[alias]


@cache
def _select(
    model: type[models.Model], vendor: str, columns: tuple[str, ...], where: tuple[str, ...]
) -> str:
    connection = _connection(model, write=False)
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in columns]
    conditions = " AND ".join(_condition(model, quote, spec) for spec in where)
    return (
        f"SELECT {', '.join(quote(f.column) for f in fields)} "
        f"FROM {quote(model._meta.db_table)} WHERE {conditions}"
    )


def _condition(
    model: type[models.Model], quote: Callable[[str], str], spec: str, table: str = ""
) -> str:
    """``"name"`` is ``name = %s``; ``"name >"`` (or <, <=, >=) uses that operator;
    ``"name lower"`` is ``LOWER(name) = %s``; ``"name is null"`` takes no parameter (its
    value in ``where`` is ignored). ``table``: qualify the column with it (a join)."""
    name, _, operator = spec.partition(" ")
    column = quote(model._meta.get_field(name).column)
    if table:
        column = f"{table}.{column}"
    if operator == "is null":
        return f"{column} IS NULL"
    if operator == "lower":
        # LOWER(col) = %s: the form a lower(col) expression index serves (the value is
        # expected in lower case already).
        return f"LOWER({column}) = %s"
    if operator not in ("", ">", "<", ">=", "<="):
        raise ValueError(f"unsupported condition {spec!r}")
    return f"{column} {operator or '='} %s"


def _params(connection: Any, model: type[models.Model], where: dict[str, Any]) -> list[Any]:
    return [
        _param(connection, model, spec.partition(" ")[0], value)
        for spec, value in where.items()
        if not spec.endswith(" is null")
    ]


def _converters(connection: Any, field: models.Field) -> list[Converter]:
    column = field.get_col(field.model._meta.db_table)
    return connection.ops.get_db_converters(column) + column.get_db_converters(connection)


@cache
def _column_converters(
    model: type[models.Model], vendor: str, columns: tuple[str, ...]
) -> tuple[tuple[Any, tuple[Converter, ...]], ...]:
    connection = _connection(model, write=False)
    out = []
    for name in columns:
        field = model._meta.get_field(name)
        out.append((field.get_col(model._meta.db_table), tuple(_converters(connection, field))))
    return tuple(out)


def _param(connection: Any, model: type[models.Model], name: str, value: Any) -> Any:
    # Lookups prepare their right-hand side with get_db_prep_value; saves go through
    # get_db_prep_save (for the JSONField here, the same adaptation).
    field = model._meta.get_field(name)
    return field.get_db_prep_value(value, connection, prepared=False)


def select_one(
    model: type[models.Model],
    columns: Sequence[str],
    where: dict[str, Any],
) -> dict[str, Any] | None:
    """The row of ``model`` matching ``where`` (field name, optionally with an operator:
    ``{"pk_field": x, "expires >": now}``), as {column field name: value}, or None."""
    connection = _connection(model, write=False)
    columns = tuple(columns)
    specs = tuple(where)
    sql = _select(model, connection.vendor, columns, specs)
    params = _params(connection, model, where)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip(columns, _converted(connection, model, columns, row), strict=True))


def _converted(
    connection: Any, model: type[models.Model], columns: tuple[str, ...], row: Sequence[Any]
) -> list[Any]:
    """The row's values as the ORM's compiler would hand them to the model."""
    values = []
    for raw, (column, converters) in zip(
        row, _column_converters(model, connection.vendor, columns), strict=True
    ):
        value = raw
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    return values


def _attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in model._meta.concrete_fields)


def columns_of(model: type[M], table: str = "") -> str:
    """Every concrete column of ``model``, quoted, in field order (for a statement whose
    rows go to ``build``); ``table``: qualified with that (quoted) name or alias."""
    quote = _connection(model, write=False).ops.quote_name
    prefix = f"{table}." if table else ""
    return ", ".join(f"{prefix}{quote(f.column)}" for f in model._meta.concrete_fields)


def build(model: type[M], row: Sequence[Any]) -> M:
    """The instance of ``model`` for a row of ``columns_of(model)``, converted as the ORM
    converts its values."""
    connection = _connection(model, write=False)
    names = _attnames(model)
    return model.from_db(connection.alias, list(names), _converted(connection, model, names, row))


def get(model: type[M], where: dict[str, Any], *, related: str | None = None) -> M | None:
    """The model instance matching ``where`` (every concrete field loaded, as
    ``QuerySet.first()`` without an ordering would give it), or None.

    ``related``: a foreign key of ``model`` whose row is read in the same statement (a
    LEFT JOIN) and cached on the instance, as ``select_related(related)`` does."""
    names = _attnames(model)
    if related is None:
        row = select_one(model, names, where)
        if row is None:
            return None
        alias = _connection(model, write=False).alias
        return model.from_db(alias, list(names), list(row.values()))
    return _get_with_related(model, where, related)


@cache
def _join_select(
    model: type[models.Model], vendor: str, related: str, where: tuple[str, ...]
) -> str:
    quote = _connection(model, write=False).ops.quote_name
    key = model._meta.get_field(related)
    target = key.related_model
    main, joined = quote(model._meta.db_table), quote(target._meta.db_table)
    columns = [f"{main}.{quote(f.column)}" for f in model._meta.concrete_fields]
    columns += [f"{joined}.{quote(f.column)}" for f in target._meta.concrete_fields]
    on = f"{joined}.{quote(key.target_field.column)} = {main}.{quote(key.column)}"
    conditions = " AND ".join(_condition(model, quote, spec, main) for spec in where)
    return (
        f"SELECT {', '.join(columns)} FROM {main} LEFT OUTER JOIN {joined} ON ({on}) "
        f"WHERE {conditions}"
    )


def _get_with_related(model: type[M], where: dict[str, Any], related: str) -> M | None:
    connection = _connection(model, write=False)
    key = model._meta.get_field(related)
    target = key.related_model
    with connection.cursor() as cursor:
        cursor.execute(
            _join_select(model, connection.vendor, related, tuple(where)),
            _params(connection, model, where),
        )
        row = cursor.fetchone()
    if row is None:
        return None
    names, target_names = _attnames(model), _attnames(target)
    split = len(names)
    instance = model.from_db(
        connection.alias, list(names), _converted(connection, model, names, row[:split])
    )
    values = _converted(connection, target, target_names, row[split:])
    pk_at = target_names.index(target._meta.pk.attname)
    other = (
        None
        if values[pk_at] is None
        else target.from_db(connection.alias, list(target_names), values)
    )
    key.set_cached_value(instance, other)
    return instance


def exists(model: type[models.Model], where: dict[str, Any]) -> bool:
    """Whether a row of ``model`` matches ``where`` (``SELECT 1 ... LIMIT 1``)."""
    connection = _connection(model, write=False)
    quote = connection.ops.quote_name
    conditions = " AND ".join(_condition(model, quote, spec) for spec in where)
    table = quote(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE {conditions} LIMIT 1", _params(connection, model, where)
        )
        return cursor.fetchone() is not None


def insert(model: type[models.Model], values: dict[str, Any]) -> None:
    """``INSERT INTO ... (<fields>) VALUES (...)``: every column given (no defaults are
    filled in here); a duplicate primary key raises IntegrityError as the ORM's would."""
    connection = _connection(model, write=True)
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in values]
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", params)


def update(
    model: type[models.Model],
    values: dict[str, Any],
    where: dict[str, Any],
    *,
    increment: str | None = None,
) -> int:
    """``UPDATE ... SET <values>[, <increment> = <increment> + 1] WHERE <where>``; the
    number of rows changed (0: nothing matched, e.g. a compare-and-set that lost)."""
    connection = _connection(model, write=True)
    quote = connection.ops.quote_name
    assignments = [f"{quote(model._meta.get_field(n).column)} = %s" for n in values]
    params = [model._meta.get_field(n).get_db_prep_save(v, connection) for n, v in values.items()]
    if increment is not None:
        column = quote(model._meta.get_field(increment).column)
        assignments.append(f"{column} = {column} + 1")
    conditions = " AND ".join(_condition(model, quote, spec) for spec in where)
    params += _params(connection, model, where)
    sql = f"UPDATE {quote(model._meta.db_table)} SET {', '.join(assignments)} WHERE {conditions}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def delete(model: type[models.Model], where: dict[str, Any]) -> int:
    """``DELETE FROM ... WHERE <where>`` for a model with no relations or delete signals
    to honour; the number of rows deleted."""
    connection = _connection(model, write=True)
    quote = connection.ops.quote_name
    conditions = " AND ".join(_condition(model, quote, spec) for spec in where)
    params = _params(connection, model, where)
    with connection.cursor() as cursor:
        table = quote(model._meta.db_table)
        cursor.execute(f"DELETE FROM {table} WHERE {conditions}", params)
        return cursor.rowcount
