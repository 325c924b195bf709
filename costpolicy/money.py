"""Decimal helpers: money and rates never pass through binary floating point."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

HOURS_PER_MONTH = Decimal(730)
SECONDS_PER_HOUR = Decimal(3600)
SECONDS_PER_DAY = Decimal(86400)
SECONDS_PER_MONTH = HOURS_PER_MONTH * SECONDS_PER_HOUR
MILLION = Decimal(1_000_000)
ZERO = Decimal(0)
ONE = Decimal(1)


def quantize(value: Decimal, places: int = 4) -> Decimal:
    """Round for display and status (banker's rounding, like accounting systems)."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def ceil_int(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def fmt_money(value: Decimal | None, places: int = 2) -> str:
    """Money for people: `$1,234.56`, `-$0.50`, and `-` for an undefined price."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(quantize(value, places)):,}"


def money_string(value: Decimal, places: int = 2) -> str:
    """Money for machines (JSON, CSV): a plain decimal string, `1234.56`."""
    return str(quantize(value, places))
