"""The app bench/durable.py runs through the devhost: a fan-out/fan-in and a sequential chain."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

DOUBLE = "double"


@app.route(route="start/{orchestrator}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start an orchestration with the JSON body as its input."""
    instance_id = await client.start_new(req.route_params["orchestrator"], None, req.get_json())
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    """Call `count` activities at once and add up their results."""
    count = context.get_input()
    results = yield context.task_all([context.call_activity(DOUBLE, number) for number in range(count)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    """Call `count` activities one after another, each on the previous result."""
    value = 0
    for _ in range(context.get_input()):
        value = yield context.call_activity(DOUBLE, value + 1)
    return value


@app.activity_trigger(input_name="number")
def double(number: int) -> int:
    """Double a number: the work is trivial so the bench measures the orchestration machinery."""
    return number * 2
