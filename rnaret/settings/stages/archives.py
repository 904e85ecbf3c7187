"""The archives stage (``workflow/rules/archives.smk``): each entry of ``archives:`` unpacked by
``rnaret unpack`` into its folder, which the config's ``{archive: NAME, path: MEMBER}`` paths read."""
from __future__ import annotations

import re

from rnaret.settings.errors import SettingsError
from rnaret.settings.sources import ARCHIVES_DIR, archive_dir, is_url
from rnaret.settings.stages.base import Stage

MD5_VALUE = re.compile(r"[0-9a-fA-F]{32}")


class Archives(Stage):
    """The unpack jobs of ``archives:``."""

    OUTPUT = f"{ARCHIVES_DIR}/{{archive}}"  # the unpacked folder (sources.archive_dir)

    @property
    def entries(self) -> dict:
        """The ``archives:`` block: NAME -> ``{url, md5}``."""
        return self.plan.archive_entries

    def source(self, wildcards) -> dict:
        """``{"url", "md5"}`` of the archive :attr:`OUTPUT` unpacks (``archives:``)."""
        name = wildcards.archive
        if name not in self.entries:
            raise SettingsError("archives", f"no archive {name!r} (known: {', '.join(self.entries) or 'none'})")
        return {"url": self.entries[name]["url"], "md5": self.entries[name].get("md5", "")}

    def pattern(self) -> str:
        """A wildcard constraint matching exactly the names of ``archives:``."""
        return "|".join(re.escape(name) for name in self.entries) or "(?!)"

    def inputs(self, wildcards) -> list[str]:
        """A local archive and a local checksum file of ``archives.{archive}``: the unpack job's
        inputs, so that changing the file reruns it (a URL is fetched by the job itself)."""
        entry = self.source(wildcards)
        return [value.removeprefix("file://") for value in (entry["url"], entry["md5"])
                if value and not MD5_VALUE.fullmatch(value)
                and (not is_url(value) or value.startswith("file://"))]

    def dirs(self) -> list[str]:
        """The unpacked folder of every archive of ``archives:``."""
        return [archive_dir(name) for name in self.entries]
