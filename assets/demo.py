"""A small task tracker: tasks with priorities, due dates and tags.

Open this file in pie-edit and start typing below any function: the
editor suggests the next line as ghost text, Tab accepts it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import Enum
from pathlib import Path
from typing import Iterable, Iterator


class Priority(Enum):
    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4

    @classmethod
    def parse(cls, text: str) -> "Priority":
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(p.name.lower() for p in cls)
            raise ValueError(f"unknown priority {text!r} (expected one of {names})") from None


@dataclass
class Task:
    title: str
    priority: Priority = Priority.NORMAL
    due: date | None = None
    tags: set[str] = field(default_factory=set)
    done: bool = False

    def is_overdue(self, today: date) -> bool:
        return not self.done and self.due is not None and self.due < today

    def days_left(self, today: date) -> int | None:
        if self.due is None:
            return None
        return (self.due - today).days

    def to_json(self) -> dict:
        return {
            "title": self.title,
            "priority": self.priority.name.lower(),
            "due": self.due.isoformat() if self.due else None,
            "tags": sorted(self.tags),
            "done": self.done,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Task":
        due = data.get("due")
        return cls(
            title=data["title"],
            priority=Priority.parse(data.get("priority", "normal")),
            due=date.fromisoformat(due) if due else None,
            tags=set(data.get("tags", [])),
            done=bool(data.get("done", False)),
        )


class TaskList:
    """An ordered collection of tasks, saved as JSON."""

    def __init__(self, tasks: Iterable[Task] = ()):
        self._tasks: list[Task] = list(tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks)

    def add(self, task: Task) -> None:
        if any(t.title == task.title and not t.done for t in self._tasks):
            raise ValueError(f"an open task named {task.title!r} already exists")
        self._tasks.append(task)

    def find(self, title: str) -> Task | None:
        for task in self._tasks:
            if task.title == title:
                return task
        return None

    def complete(self, title: str) -> Task:
        task = self.find(title)
        if task is None:
            raise KeyError(title)
        task.done = True
        return task

    def open_tasks(self) -> list[Task]:
        return [t for t in self._tasks if not t.done]

    def overdue(self, today: date) -> list[Task]:
        return [t for t in self._tasks if t.is_overdue(today)]

    def with_tag(self, tag: str) -> list[Task]:
        return [t for t in self._tasks if tag in t.tags]

    def by_urgency(self, today: date) -> list[Task]:
        def key(task: Task) -> tuple[int, int, str]:
            days = task.days_left(today)
            return (-task.priority.value, days if days is not None else 10_000, task.title)

        return sorted(self.open_tasks(), key=key)

    def due_within(self, today: date, days: int) -> list[Task]:
        limit = today + timedelta(days=days)
        return [t for t in self.open_tasks() if t.due is not None and t.due <= limit]

    def tag_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for task in self.open_tasks():
            for tag in task.tags:
                counts[tag] = counts.get(tag, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def save(self, path: Path) -> None:
        data = [task.to_json() for task in self._tasks]
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "TaskList":
        if not path.exists():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(Task.from_json(item) for item in data)


def format_task(task: Task, today: date) -> str:
    mark = "x" if task.done else " "
    parts = [f"[{mark}] {task.title}"]
    if task.priority is not Priority.NORMAL:
        parts.append(f"({task.priority.name.lower()})")
    days = task.days_left(today)
    if days is not None and not task.done:
        if days < 0:
            parts.append(f"overdue by {-days}d")
        elif days == 0:
            parts.append("due today")
        else:
            parts.append(f"due in {days}d")
    if task.tags:
        parts.append(" ".join(f"#{tag}" for tag in sorted(task.tags)))
    return "  ".join(parts)


def parse_due(text: str, today: date) -> date:
    text = text.strip().lower()
    if text == "today":
        return today
    if text == "tomorrow":
        return today + timedelta(days=1)
    if text.endswith("d") and text[:-1].isdigit():
        return today + timedelta(days=int(text[:-1]))
    return date.fromisoformat(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasks", description=__doc__)
    parser.add_argument("--file", type=Path, default=Path("tasks.json"))
    sub = parser.add_subparsers(dest="command", required=True)

    add = sub.add_parser("add", help="add a task")
    add.add_argument("title")
    add.add_argument("--priority", default="normal")
    add.add_argument("--due")
    add.add_argument("--tag", action="append", default=[])

    done = sub.add_parser("done", help="mark a task as done")
    done.add_argument("title")

    show = sub.add_parser("list", help="list open tasks by urgency")
    show.add_argument("--tag")
    show.add_argument("--all", action="store_true")

    sub.add_parser("tags", help="count open tasks per tag")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    today = date.today()
    tasks = TaskList.load(args.file)

    if args.command == "add":
        due = parse_due(args.due, today) if args.due else None
        task = Task(args.title, Priority.parse(args.priority), due, set(args.tag))
        tasks.add(task)
        tasks.save(args.file)
        print(format_task(task, today))
    elif args.command == "done":
        try:
            task = tasks.complete(args.title)
        except KeyError:
            print(f"no task named {args.title!r}", file=sys.stderr)
            return 1
        tasks.save(args.file)
        print(format_task(task, today))
    elif args.command == "list":
        selected = list(tasks) if args.all else tasks.by_urgency(today)
        if args.tag:
            selected = [t for t in selected if args.tag in t.tags]
        for task in selected:
            print(format_task(task, today))
    elif args.command == "tags":
        for tag, count in tasks.tag_counts().items():
            print(f"{count:3d}  #{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
