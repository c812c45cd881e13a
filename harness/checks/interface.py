"""interface.gradio: the grader launches the student's interface on 127.0.0.1 and calls it with gradio_client."""

from __future__ import annotations

from harness import config
from harness.checks.common import CheckContext, describe_cell_failure, first_line, skipped_for
from harness.records import CheckResult

CHECK_ID = "interface.gradio"
TEXT_COMPONENTS = ("Textbox", "TextArea")


def grade(context: CheckContext) -> CheckResult:
    points = context.config.rubric.points(CHECK_ID)
    skip = skipped_for(context, CHECK_ID, points, needs_model=True)
    if skip:
        return skip

    data = context.probe(CHECK_ID)
    details = {key: data.get(key) for key in ("class", "source", "inputs", "outputs", "url", "api_name", "prompt",
                                                "answer", "direct")}
    if not data.get("defined"):
        failures = context.failed_cells_for(CHECK_ID)
        if failures:
            return CheckResult(CHECK_ID, "error", 0.0, points,
                               f"No Gradio interface exists because {describe_cell_failure(failures[0])}.", details)
        return CheckResult(CHECK_ID, "failed", 0.0, points,
                           f"No Gradio interface was found. Create `{config.INTERFACE_VAR} = gr.Interface("
                           f"fn={config.GENERATE_FN}, inputs=\"text\", outputs=\"text\")`.", details)

    if data.get("class") != "Interface":
        return CheckResult(CHECK_ID, "failed", 0.0, points,
                           f"`{config.INTERFACE_VAR}` is a gr.{data.get('class')}, not a gr.Interface; build it with "
                           f"gr.Interface(fn={config.GENERATE_FN}, inputs=\"text\", outputs=\"text\").", details)
    if data.get("inputs") != ["Textbox"] or data.get("outputs", [None])[0] not in TEXT_COMPONENTS or len(data.get("outputs", [])) != 1:
        return CheckResult(CHECK_ID, "failed", 0.0, points,
                           f"The interface has inputs {data.get('inputs')} and outputs {data.get('outputs')}; "
                           "the chatbot needs one text input and one text output (inputs=\"text\", outputs=\"text\").",
                           details)
    if data.get("launch_error"):
        error = data["launch_error"]
        return CheckResult(CHECK_ID, "error", 0.0, points,
                           f"The interface could not be launched: {error['error_type']}: {first_line(error['error'])}",
                           details)
    if data.get("call_error"):
        return CheckResult(CHECK_ID, "error", 0.0, points,
                           f"The interface started but calling it with gradio_client failed: "
                           f"{first_line(data['call_error'])}. Check that its function accepts one string.", details)
    if "direct" not in data or data.get("direct") is None:
        return CheckResult(CHECK_ID, "skipped", 0.0, points,
                           f"The interface answered, but `{config.GENERATE_FN}` gave no reply to compare it with "
                           "(see the chatbot check).", details)
    if data["answer"] != data["direct"]:
        return CheckResult(CHECK_ID, "failed", 0.0, points,
                           f"For {data['prompt']!r} the interface answered {data['answer'][:120]!r} but "
                           f"`{config.GENERATE_FN}` answered {data['direct'][:120]!r}; pass "
                           f"fn={config.GENERATE_FN} to gr.Interface.", details)
    return CheckResult(CHECK_ID, "passed", points, points,
                       f"The grader launched the interface on 127.0.0.1, called {data['api_name']} with "
                       f"gradio_client, and got the same reply as `{config.GENERATE_FN}`.", details)
