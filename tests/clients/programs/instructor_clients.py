"""instructor as its users use it, in its TOOLS and JSON_SCHEMA modes.

Usage: python instructor_clients.py MODE MODEL  (OPENAI_BASE_URL, OPENAI_API_KEY set)
"""

from __future__ import annotations

import json
import sys

import instructor
from openai import OpenAI
from pydantic import BaseModel, Field


class User(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)


def main() -> None:
    mode = {"tools": instructor.Mode.TOOLS, "json_schema": instructor.Mode.JSON_SCHEMA}[sys.argv[1]]
    client = instructor.from_openai(OpenAI(max_retries=0, timeout=120), mode=mode)
    user = client.chat.completions.create(
        model=sys.argv[2],
        response_model=User,
        max_retries=0,
        temperature=0,
        messages=[{"role": "user", "content": "Extract the user: Jason is 25 years old."}],
    )
    print(json.dumps({"user": user.model_dump()}))


if __name__ == "__main__":
    main()
