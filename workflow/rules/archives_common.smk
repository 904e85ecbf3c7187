# Helper functions of workflow/rules/archives.smk (kept apart from the rules, as --lint asks).

import re

from rnaret.data.download import is_url


def archive_names():
    """The names of the configured archives (keys of `archives:`)."""
    return list(config.get("archives") or {})


def archive_pattern():
    """A wildcard constraint matching exactly the configured archive names."""
    return "|".join(re.escape(name) for name in archive_names()) or "(?!)"


def archive_local_inputs(wildcards):
    """A local archive (and a local checksum file) as the job's inputs, so a changed file reruns
    the job; a URL is fetched by the job itself."""
    entry = config["archives"][wildcards.archive]
    return [
        str(source).removeprefix("file://")
        for source in (entry.get("url"), entry.get("md5"))
        if source
        and (not is_url(str(source)) or str(source).startswith("file://"))
        and not re.fullmatch(r"[0-9a-fA-F]{32}", str(source))
    ]
