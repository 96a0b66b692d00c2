// Shows what FLOAT Speech to Emotion predicted (its ui.text) on the node itself.
import { app } from "../../scripts/app.js";

app.registerExtension({
  name: "FLOAT.SpeechToEmotion",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "FloatSpeechToEmotion") return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text ?? []).join("\n");
      let widget = this.widgets?.find((w) => w.name === "predicted");
      if (!widget) {
        // A read-only text box that is not saved with the workflow: it is a result, not a setting.
        widget = this.addDOMWidget("predicted", "text", document.createElement("textarea"), {
          getValue: () => widget.element.value,
          setValue: (value) => { widget.element.value = value; },
          serialize: false,
        });
        widget.element.readOnly = true;
        widget.element.rows = 4;
      }
      widget.element.value = text;
      this.setSize([this.size[0], this.computeSize()[1]]);
    };
  },
});
