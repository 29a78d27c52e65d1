"""LangChain's ChatOpenAI as its users use it: `with_structured_output` and `bind_tools`.

Usage: python langchain_clients.py CASE MODEL  (OPENAI_BASE_URL, OPENAI_API_KEY set)
Prints one JSON line with what the client returned.
"""

from __future__ import annotations

import json
import sys

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="the person's first name")
    age: int = Field(ge=0, le=150, description="age in years")


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def get_time(timezone: str) -> str:
    """The time in a timezone."""
    return "12:00"


def main() -> None:
    case, model = sys.argv[1], sys.argv[2]
    llm = ChatOpenAI(model=model, temperature=0, max_retries=0, timeout=120)
    if case == "structured":
        person = llm.with_structured_output(Person).invoke("Alice is 31 years old. Extract the person.")
        assert isinstance(person, Person)
        print(json.dumps({"person": person.model_dump()}))
    elif case == "tools_any":
        message = llm.bind_tools([get_weather, get_time], tool_choice="any").invoke("What is the weather in Paris?")
        print(json.dumps({"tool_calls": [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]}))
    else:
        raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main()
