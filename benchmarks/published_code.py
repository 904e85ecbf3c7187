"""Run the published RNAret code itself beside ours: import its ``retnet.py`` from a checkout.

The published encoder (DrBlackZJU/RNAret, ``retnet.py``) imports torchscale and fairscale;
torchscale imports ``timm`` only for ``drop_path``. ``import_published(repo)``:

* installs ``torchscale==0.3.0`` and ``fairscale==0.4.13`` with ``pip install --no-deps --target
  DIR`` into a cache folder (``--published-deps``, default ``~/.cache/rnaret/published-deps``)
  unless they are there already (no other package is touched: torch is the one installed);
* writes a stand-in ``timm/models/layers.py`` into a temporary folder: ``drop_path`` is the
  identity when not training or p = 0 (the benchmarks run the published model in eval mode,
  or train it with ``drop_path_rate`` 0, the published default, where timm is never called);
* imports ``retnet.py`` from the checkout as the module ``published_retnet``.

``published_encoder(module, config)`` builds the published ``RetNet`` with our
``EncoderConfig``'s sizes (the published pretraining script's arguments), and
``copy_weights(ours, theirs)`` loads our state dict into it (the key names are the same).
Nothing of the published code is copied into the project.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PUBLISHED_DEPS = ("torchscale==0.3.0", "fairscale==0.4.13")
DEFAULT_DEPS_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnaret" / "published-deps"
TIMM_STAND_IN = '''"""Stand-in for timm's drop_path (torchscale imports it; eval and p = 0 only)."""


def drop_path(x, drop_prob=0.0, training=False):
    if drop_prob == 0.0 or not training:
        return x
    raise RuntimeError("the timm stand-in implements drop_path for p = 0 or eval mode only")
'''


def add_published_arguments(parser) -> None:
    """``--published-repo PATH`` and ``--published-deps DIR`` of the benchmarks."""
    parser.add_argument("--published-repo", default=None, metavar="PATH",
                        help="a checkout of DrBlackZJU/RNAret: time its retnet.py itself beside ours "
                             "(default: our model run the published way stands in)")
    parser.add_argument("--published-deps", default=str(DEFAULT_DEPS_DIR), metavar="DIR",
                        help=f"where torchscale and fairscale are installed for it (default {DEFAULT_DEPS_DIR})")


def ensure_deps(target: Path) -> Path:
    """``target`` holding torchscale and fairscale (installed with --no-deps if missing)."""
    target = Path(target)
    if not ((target / "torchscale").is_dir() and (target / "fairscale").is_dir()):
        print(f"installing {' '.join(PUBLISHED_DEPS)} into {target} (pip --no-deps --target)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        *PUBLISHED_DEPS], check=True)
    return target


def import_published(repo, deps_dir=DEFAULT_DEPS_DIR):
    """The published ``retnet`` module of the checkout ``repo`` (see the module docstring)."""
    repo = Path(repo).resolve()
    source = repo / "retnet.py"
    if not source.is_file():
        raise SystemExit(f"--published-repo {repo}: no retnet.py there (a checkout of DrBlackZJU/RNAret?)")
    deps = ensure_deps(Path(deps_dir))
    stand_in = Path(tempfile.mkdtemp(prefix="rnaret-timm-"))
    (stand_in / "timm" / "models").mkdir(parents=True)
    (stand_in / "timm" / "__init__.py").write_text("")
    (stand_in / "timm" / "models" / "__init__.py").write_text("")
    (stand_in / "timm" / "models" / "layers.py").write_text(TIMM_STAND_IN)
    for path in (str(stand_in), str(deps)):
        if path not in sys.path:
            sys.path.insert(0, path)
    spec = importlib.util.spec_from_file_location("published_retnet", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["published_retnet"] = module
    spec.loader.exec_module(module)
    return module


def published_encoder(module, config):
    """The published ``RetNet`` with the sizes of ``config`` (an ``EncoderConfig``), as the
    published pretraining script builds it (its other settings at their defaults)."""
    return module.RetNet(module.RetNetConfig(
        vocab_size=config.vocab_size, retnet_embed_dim=config.retnet_embed_dim,
        retnet_value_embed_dim=config.retnet_value_embed_dim, retnet_ffn_embed_dim=config.retnet_ffn_embed_dim,
        retnet_layers=config.retnet_layers, retnet_retention_heads=config.retnet_retention_heads,
        dropout=config.dropout, activation_dropout=config.activation_dropout))


def copy_weights(ours, theirs) -> None:
    """Load our encoder's state dict into the published model (same key names, strict)."""
    theirs.load_state_dict(ours.state_dict(), strict=True)
