"""Data sources as plug-ins: each kind of source is a :class:`Source` with its own options class.

``data.dataset`` names a registered source (``mnist``, ``digits``, one that test code registered
with :func:`register_source`) or a path, which the path sources claim (a folder of images, a
``.csv``/``.npy``/``.npz`` table). Each source brings a pydantic options class (a
:class:`SourceOptions` subclass tagged by ``kind``) holding the settings only it reads, such as a
folder's ``channels`` and ``image_size``; :class:`aelab.data.config.DataConfig` validates
``data.source`` against the class of the source its ``dataset`` names, the way a run's
``model`` is validated against its family's config. Nothing downstream asks which kind it was.

A source also says, without reading any data, what its samples are called (:attr:`Source.noun`:
"digit", "image", "sample"), its classes, its sample shape and its value range where it knows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from .._schema import Frozen
from ..errors import ConfigError
from .dataset import SAMPLES, Dataset, Nouns


class SourceOptions(Frozen):
    """The options of one kind of data source (``data.source``); ``kind`` tags the class."""

    kind: str

    def sample_shape(self) -> tuple[int, ...] | None:
        """The shape of one sample these options fix without reading the data (a folder's
        ``channels`` and ``image_size``), or None."""
        return None


class PlainOptions(SourceOptions):
    """No options: a source that reads nothing but its name (a registered function's)."""

    kind: Literal["plain"] = "plain"


@dataclass(frozen=True)
class DataOptions:
    """Where the data comes from (not part of a run's identity): the IDX sets' cache directory and
    local copies, whether the network may be used, and whether downloads show progress."""

    data_dir: str | None = None
    files: tuple[str, ...] = ()
    offline: bool = False
    progress: bool = True

    def __reduce__(self):
        # sent to another process (a spawned or Ray worker), the options take along the sources
        # added from code here, which the worker registers on arrival: it starts with the built-in ones
        return (_arrive, ((self.data_dir, self.files, self.offline, self.progress), added_sources()))


def _arrive(fields: tuple, sources: tuple[Source, ...]) -> DataOptions:
    add_sources(sources)
    return DataOptions(*fields)


Reader = Callable[[Any, SourceOptions, DataOptions], Dataset]


@dataclass(frozen=True)
class Source:
    """One data source plug-in.

    ``name``: the registered name ``data.dataset`` gives (``mnist``), or for a path source the kind
    of path it claims (``folder``, ``table``). ``read(data_cfg, options, data_options) -> Dataset``
    reads it (``data_cfg.limit``/``test_limit`` are applied after, unless ``sized_by_limits``).
    ``Options``: its :class:`SourceOptions` class. ``sample_shape``/``value_range``: known without
    reading (None: read to learn). ``claims``: for a path source, whether it reads a given path.
    ``uses_files``: whether ``--data-dir``/``--data-file`` mean something for it.
    """

    name: str
    read: Reader
    Options: type[SourceOptions] = PlainOptions
    description: str = ""
    noun: Nouns = SAMPLES
    classes: tuple[str, ...] = ()
    sample_shape: tuple[int, ...] | None = None
    value_range: tuple[float, float] | None = None
    #: what it is, for messages: "a folder of images"
    what: str = ""
    uses_files: bool = False
    sized_by_limits: bool = False
    claims: Callable[[str], bool] | None = None
    #: added from code with :func:`register_source` (not built in)
    added: bool = False

    @property
    def kind(self) -> str:
        return self.Options.model_fields["kind"].default

    @property
    def is_path(self) -> bool:
        return self.claims is not None


#: Registered sources by name (what ``data.dataset`` may name besides a path).
SOURCES: dict[str, Source] = {}
#: Path sources, asked in order which of them reads a path.
PATH_SOURCES: list[Source] = []


def add_source(source: Source) -> Source:
    """Register ``source`` (a named one, or a path source when it ``claims`` paths); a name that is
    taken is refused in one line."""
    if source.is_path:
        if any(s.name == source.name for s in PATH_SOURCES):
            raise ConfigError(f"a path data source named {source.name!r} is already registered; choose another name")
        PATH_SOURCES.append(source)
        return source
    if source.name in SOURCES:
        have = SOURCES[source.name].description or "a registered source"
        raise ConfigError(f"data source {source.name!r} is already registered ({have}); "
                          "choose another name")
    if not source.name or not source.name.strip() or "/" in source.name or source.name != source.name.strip():
        raise ConfigError(f"data source name {source.name!r}: give a plain name such as my-set (no '/', no spaces around it)")
    SOURCES[source.name] = source
    return source


def register_source(
    name: str,
    read: Callable[..., Dataset | tuple],
    *,
    options: type[SourceOptions] = PlainOptions,
    noun: Nouns | tuple[str, str] = SAMPLES,
    classes: tuple[str, ...] = (),
    sample_shape: tuple[int, ...] | None = None,
    value_range: tuple[float, float] | None = None,
    description: str = "",
) -> Source:
    """Register a named data source from anywhere (test code, a notebook): ``data.dataset = name``
    then reads it in any :class:`~aelab.config.RunConfig`.

    ``read(data_cfg)`` returns a :class:`Dataset` or ``(x_train, y_train, x_test, y_test)`` (arrays
    ``(N, *sample_shape)``; labels ``(N,)`` or None), which is wrapped with ``value_range``,
    ``classes`` and ``noun``. ``options``: its own :class:`SourceOptions` subclass when it reads
    settings (``data.source``); ``sample_shape``: give it to spare a read when a config is fitted.
    A name already registered is refused (:class:`~aelab.errors.ConfigError`, one line).
    """
    nouns = Nouns(*noun)
    wrapped = _Registered(name, read, nouns, tuple(classes), value_range)
    return add_source(Source(name, wrapped, options, description or f"{name} (registered from code)", nouns,
                             tuple(classes), None if sample_shape is None else tuple(sample_shape), value_range,
                             what=f"the data source {name}", added=True))


@dataclass(frozen=True)
class _Registered:
    """A registered function as a source's reader: a picklable object (not a closure), so the
    source can travel to a spawned worker process with :func:`added_sources`."""

    name: str
    read: Callable[..., Dataset | tuple]
    noun: Nouns
    classes: tuple[str, ...]
    value_range: tuple[float, float] | None

    def __call__(self, cfg: Any, opts: SourceOptions, data_opts: DataOptions) -> Dataset:
        got = self.read(cfg)
        if isinstance(got, Dataset):
            return got if got.noun != SAMPLES or self.noun == SAMPLES else replace(got, noun=self.noun)
        xtr, ytr, xte, yte = got
        return Dataset(self.name, opts.kind, xtr, ytr, xte, yte, self.value_range, self.classes,
                       {"dataset": self.name, "kind": opts.kind, "source": "registered"}, self.noun)


def added_sources() -> tuple[Source, ...]:
    """The sources :func:`register_source` added in this process, to hand to a spawned worker
    (which starts with the built-in ones only) and register there with :func:`add_sources`."""
    return tuple(s for s in SOURCES.values() if s.added)


def add_sources(sources: tuple[Source, ...]) -> None:
    """Register ``sources`` (from :func:`added_sources` of another process) where not registered yet."""
    for s in sources:
        if s.name not in SOURCES:
            add_source(s)


def unregister_source(name: str) -> None:
    """Remove a source :func:`register_source` added (tests clean up with it)."""
    SOURCES.pop(name, None)


def source_for(dataset: str) -> Source:
    """The source that reads ``dataset``: the registered one of that name, else the first path source
    that claims it (a folder unless the name ends in a table's suffix). No file is read."""
    if dataset in SOURCES:
        return SOURCES[dataset]
    for s in PATH_SOURCES:
        if s.claims(dataset):
            return s
    raise ConfigError(f"data set {dataset!r}: no data source reads it; give a registered name "
                      f"({', '.join(SOURCES)}) or a path")


def is_registered(dataset: str) -> bool:
    return dataset in SOURCES


def nouns(data: Any) -> Nouns:
    """What one sample of a data set is called (``Nouns("digit", "digits")``), from a data config, a
    run config or a ``data.dataset`` string, without reading the data."""
    if hasattr(data, "data") and hasattr(data.data, "dataset"):
        data = data.data
    name = data.dataset if hasattr(data, "dataset") else str(data)
    try:
        return source_for(name).noun
    except ConfigError:
        return SAMPLES


def classes(data: Any) -> tuple[str, ...]:
    """A registered source's class names without reading it (``()`` for a path: read it to learn)."""
    name = getattr(data, "dataset", data)
    s = SOURCES.get(str(name))
    return s.classes if s is not None else ()


