"""Shell launch lines: parsed with bashlex, checked by JSON rules of the ``shell_*``/``docker_*`` kinds.

``parse`` turns shell text into :class:`~transplant.shell.model.ShellScan` records (commands, words,
parameter expansions, lines the parser could not read); each rule kind in ``kinds/`` looks at a scan
and records edits and rows in a :class:`~transplant.shell.model.Findings`. The file front ends
(``transplant.sources.shell`` for scripts, Makefiles and Dockerfiles; ``transplant.sources.notebook``
for ``!cmd``/``%env``/``%%bash``) build the scans and turn findings into report rows.
"""
