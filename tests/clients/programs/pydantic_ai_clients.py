"""pydantic-ai as its users use it: an agent with a tool and a structured `output_type`
(its default output mode: an output tool, with `tool_choice` required).

Usage: python pydantic_ai_clients.py MODEL  (OPENAI_BASE_URL, OPENAI_API_KEY set)
"""

from __future__ import annotations

import json
import os
import sys

from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider


class CityInfo(BaseModel):
    city: str
    country: str
    population_millions: int = Field(ge=0)


def main() -> None:
    provider = OpenAIProvider(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"])
    agent = Agent(OpenAIChatModel(sys.argv[1], provider=provider), output_type=CityInfo)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    result = agent.run_sync("Tell me about Paris.")
    assert isinstance(result.output, CityInfo)
    print(json.dumps({"output": result.output.model_dump()}))


if __name__ == "__main__":
    main()
