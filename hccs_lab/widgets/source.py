"""What a widget was given to pick heads from: one head's rows, one bank, or several models' banks."""
from __future__ import annotations

from collections.abc import Mapping

from ..capture import HeadRows, LogitBank
from ..errors import InputError, InputTypeError


class HeadSource:
    """`HeadRows` (one fixed head), a `LogitBank`, or a mapping model name -> `LogitBank` (may be lazy).

    `models` lists the model names ([] for bare rows); `bank(model)` and `rows(model, layer, head)`
    give the data. A lazy mapping (`hccs_lab.session.Banks`) captures a model's bank only when it
    is first picked.
    """

    def __init__(self, source):
        if isinstance(source, HeadRows):
            self.fixed, self._banks = source, {}
        elif isinstance(source, LogitBank):
            self.fixed, self._banks = None, {source.model_name: source}
        elif isinstance(source, Mapping) and len(source) > 0:
            self.fixed, self._banks = None, source
        else:
            raise InputTypeError("give one head's rows (bank[layer, head]), a LogitBank, or a mapping "
                                 f"model name -> LogitBank; got {type(source).__name__}")

    @property
    def models(self) -> list[str]:
        return list(self._banks)

    @property
    def selectable(self) -> bool:
        return self.fixed is None

    def bank(self, model: str) -> LogitBank:
        if model not in self._banks:
            raise InputError(f"model {model!r} is not one of {self.models}")
        bank = self._banks[model]
        if not isinstance(bank, LogitBank):
            raise InputTypeError(f"the bank for {model!r} is a {type(bank).__name__}, not a LogitBank")
        return bank

    def rows(self, model: str | None, layer: int | None, head: int | None) -> HeadRows:
        if self.fixed is not None:
            return self.fixed
        return self.bank(model)[int(layer), int(head)]
