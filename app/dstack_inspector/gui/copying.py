"""Copy out of any list, tree or table of the window: "Copy" takes the cell under the cursor, "Copy rows" every
selected row (cells tab-separated), both whole even where the cell shows them shortened. Reviewers paste hashes,
ids and summaries into tickets and other tools; a value retyped from the screen is a value mistyped."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QWidget

# A model whose cells show shortened text (a digest cut to fit) gives the whole of it under this role.
FULL_TEXT_ROLE = Qt.ItemDataRole.UserRole + 50


def cell_text(index: QModelIndex) -> str:
    full = index.data(FULL_TEXT_ROLE)
    if full is not None:
        return str(full)
    shown = index.data(Qt.ItemDataRole.DisplayRole)
    return "" if shown is None else str(shown)


def selected_rows_text(view: QAbstractItemView) -> str:
    model = view.model()
    if model is None:
        return ""
    rows = sorted({(i.parent(), i.row()) for i in view.selectionModel().selectedIndexes()},
                  key=lambda key: (view.visualRect(model.index(key[1], 0, key[0])).top(), key[1]))
    columns = [c for c in range(model.columnCount(rows[0][0] if rows else QModelIndex()))
               if not (hasattr(view, "isColumnHidden") and view.isColumnHidden(c))]
    return "\n".join("\t".join(cell_text(model.index(row, c, parent)) for c in columns) for parent, row in rows)


def install_copy(view: QAbstractItemView) -> None:
    """The two copy actions, in the view's context menu; Ctrl+C copies the rows, as in a spreadsheet."""
    copy_cell = QAction("Copy", view)
    copy_cell.triggered.connect(lambda: _put(cell_text(view.currentIndex())))
    copy_rows = QAction("Copy rows", view)
    copy_rows.setShortcut(QKeySequence.StandardKey.Copy)
    copy_rows.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
    copy_rows.triggered.connect(lambda: _put(selected_rows_text(view)))
    own = view.actions()  # a view's own actions (the history's) come after the copy actions
    if own:
        separator = QAction(view)
        separator.setSeparator(True)
        view.insertActions(own[0], [copy_cell, copy_rows, separator])
    else:
        view.addActions([copy_cell, copy_rows])
    view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)


def install_copy_everywhere(root: QWidget) -> None:
    """Every item view inside `root`'s window (not the popup lists of its combo boxes, which are windows of their
    own)."""
    for view in root.findChildren(QAbstractItemView):
        if view.window() is root.window() and not any(a.text() == "Copy" for a in view.actions()):
            install_copy(view)


def _put(text: str) -> None:
    if text:
        QGuiApplication.clipboard().setText(text)
