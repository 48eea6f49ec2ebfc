"""Where the authors' resources are published, in one place: ``load_model``'s messages, ``vtamiq convert --help``, the
README and the model card name these. A leaf (it imports nothing), so the command line's parser may read it without
loading torch."""

from __future__ import annotations

__all__ = ["AUTHORS_REPOSITORY_URL", "AUTHORS_WEIGHTS_URL"]

#: The authors' repository (Chubarau & Clark), whose README links their weights.
AUTHORS_REPOSITORY_URL = "https://github.com/ch-andrei/VTAMIQ"
#: The authors' KADIS-700k weights, ``vtamiq_kadis700k.pth`` (release2022 layout): the Google Drive file that their
#: README links (added on 2022-04-07, commit 055a4e3; see docs/background/authors-model.md).
AUTHORS_WEIGHTS_URL = "https://drive.google.com/file/d/1ucEKoSOIyMn1fYpqOAG-8DtedVFg_i3-/view"
