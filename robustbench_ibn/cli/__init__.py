"""The command line: one module per console script, thin over the library.

* :mod:`.eval`: ``robust-eval`` (also ``python -m robustbench_ibn``), Table 1 for one or more models.
* :mod:`.report`: ``robust-report``, the tables again from stored records.
* :mod:`.leaderboard`: ``robust-leaderboard``, the page generated from the entries.
* :mod:`.cache`: ``robust-cache``, the stylized-crop cache.
* :mod:`.divergence`: ``robust-divergence``, feature divergence between two domains.

:mod:`._common` holds the shared argument types and the one error handler (``PROG: error: message``, exit 2;
Ctrl-C, exit 130).
"""
