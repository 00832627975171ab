"""The four tasks: reversal (attention proof), qa, dialogue, chat. `make_task(cfg)` builds one."""

CHAT_TASKS = ("qa", "dialogue", "chat")  # language models a person can talk to; reversal only reverses


def chats(task: str) -> bool:
    """Whether a model of this task answers messages (the Chat tab, `attnlab chat`)."""
    return task in CHAT_TASKS


def make_task(cfg):
    """The task named by cfg.task, with its data loaded and its tokenizer built."""
    if cfg.task == "reversal":
        from core.tasks.reversal import ReversalTask
        return ReversalTask(cfg)
    if cfg.task == "qa":
        from core.tasks.qa import QATask
        return QATask(cfg)
    if cfg.task == "dialogue":
        from core.tasks.dialogue import DialogueTask
        return DialogueTask(cfg)
    if cfg.task == "chat":
        from core.tasks.chat import ChatTask
        return ChatTask(cfg)
    raise ValueError(f"unknown task {cfg.task!r}; choose reversal, qa, dialogue or chat")
