"""Print the text outputs of notebooks (a quick read of what a run printed)."""
import sys, nbformat
for f in sys.argv[1:]:
    print("=====", f)
    for c in nbformat.read(f, 4).cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            if o.output_type == "stream":
                print(o.text[-1500:].rstrip())
            elif "data" in o and "text/plain" in o.data and "image/png" not in o.data:
                print(o.data["text/plain"][:600])
            elif o.output_type == "error":
                print("ERROR", o.ename, o.evalue)
